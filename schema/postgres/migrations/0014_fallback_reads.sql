-- What ingest reads from Postgres when Redis cannot answer (issue 20): the same live views,
-- computed from the system of record. Views, like 0013, so ingest never names the workers'
-- tables; each is read for one poll or tournament, and the filter reaches the indexes.

-- Current votes per option of a poll (each voter's latest choice, as poll_choices).
CREATE VIEW poll_option_votes AS
SELECT c.poll, o.option, count(*) AS votes
FROM poll_choices c CROSS JOIN LATERAL unnest(c.options) AS o(option)
GROUP BY c.poll, o.option;

-- Score events with how each combines with the standing, to be folded in stream order.
CREATE VIEW score_effects AS
SELECT tournament, team, effect, points, stream_seq FROM scores;

-- A tournament's registrants: one row per user (the event id is derived from tournament and
-- user), in stream order.
CREATE VIEW registrants AS
SELECT tournament, user_id, grp, stream_seq FROM registrations;

-- Registration status changes (draw, claims, releases), to be folded in stream order for one
-- user and those whose release could have promoted them.
CREATE VIEW registration_status_changes AS
SELECT tournament, user_id, status, promoted, deadline, position, stream_seq
FROM registration_statuses;
CREATE INDEX registration_statuses_tournament_user ON registration_statuses (tournament, user_id);
CREATE INDEX registration_statuses_tournament_promoted ON registration_statuses (tournament, promoted)
    WHERE promoted IS NOT NULL;
