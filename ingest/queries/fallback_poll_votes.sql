-- A poll's current votes per option (fallback read), with 0 for an option whose voters all
-- changed their minds, as the Redis tally keeps it.
SELECT c.option, coalesce(v.votes, 0)
FROM poll_options_chosen c
LEFT JOIN poll_option_votes v ON v.poll = c.poll AND v.option = c.option
WHERE c.poll = $1
