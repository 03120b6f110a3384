-- The next page of stored events after stream sequence $1, across all kinds, in stream order
-- (the view `stored_events` is schema's row -> event mapping).
SELECT stream_seq, event_id, received_at, event::text AS event
FROM stored_events
WHERE stream_seq > $1
ORDER BY stream_seq
LIMIT $2
