-- Each registrant's position per tournament in JetStream's total order (a user's id is
-- derived from tournament and user, so each appears once). First-come places are the
-- positions up to the tournament's capacity; the Redis sink assigns the same positions as it
-- applies events in stream order, so the status endpoint never has to wait for Postgres.
CREATE VIEW registration_positions AS
SELECT tournament, user_id, grp, first_seq AS stream_seq,
       row_number() OVER (PARTITION BY tournament ORDER BY first_seq) AS position
FROM (SELECT DISTINCT ON (tournament, user_id) tournament, user_id, grp, stream_seq AS first_seq
      FROM registrations ORDER BY tournament, user_id, stream_seq) firsts;
