-- Every option a poll's votes ever chose, changed votes included: the Redis tally keeps such an
-- option at 0 once its voters moved on, and the fallback read (issue 20) lists it the same way.
CREATE VIEW poll_options_chosen AS
SELECT DISTINCT poll, option FROM poll_votes CROSS JOIN LATERAL unnest(options) AS o(option);
