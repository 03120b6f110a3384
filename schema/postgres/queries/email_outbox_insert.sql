-- The emails registration messages make ($1 ids, $2 types, $3 tournaments, $4 users,
-- $5 deadlines): won and promoted, for tournaments that email, to registrants with an
-- address; each once.
INSERT INTO email_outbox (id, tournament, user_id, event_type, deadline)
SELECT m.id, m.tournament, m.user_id, m.event_type, m.deadline
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
         AS m(id, event_type, tournament, user_id, deadline)
JOIN registrant_contacts c ON c.tournament = m.tournament AND c.user_id = m.user_id
JOIN resources r ON r.kind = 'tournament' AND r.id = m.tournament AND r.definition ? 'email'
WHERE m.event_type IN ('registration.won', 'registration.promoted')
ON CONFLICT (id) DO NOTHING
