-- Tournaments with withdrawals, and the stream sequence of the latest (the partial index
-- holds withdrawals only, so this reads no draw's statuses).
SELECT r.id, r.definition::text, max(s.stream_seq) FROM registration_statuses s
JOIN resources r ON r.kind = 'tournament' AND r.id = s.tournament
WHERE s.status = 'withdrawn'
GROUP BY r.id, r.definition::text
