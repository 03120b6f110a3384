-- An email job takes what it was handed, if still under that lease (renewing it), with the
-- address and the tournament's definition (its email settings and title).
WITH taken AS (
    UPDATE email_outbox e SET queued_at = clock_timestamp()
    FROM UNNEST($1::text[], $2::timestamptz[]) AS j(id, queued_at)
    WHERE e.id = j.id AND e.status = 'queued' AND e.queued_at = j.queued_at
    RETURNING e.id, e.tournament, e.user_id, e.event_type, e.deadline, e.attempts
)
SELECT t.id, t.tournament, t.user_id, t.event_type, t.deadline, t.attempts,
       c.email, c.time_zone, r.definition::text AS definition
FROM taken t
JOIN registrant_contacts c ON c.tournament = t.tournament AND c.user_id = t.user_id
JOIN resources r ON r.kind = 'tournament' AND r.id = t.tournament
