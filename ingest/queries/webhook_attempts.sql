-- An endpoint's newest attempts, newest first.
SELECT a.message_id, m.event_type, a.attempted_at, a.status_code, a.latency_ms, a.error, a.excerpt
FROM webhook_attempts a LEFT JOIN webhook_messages m ON m.id = a.message_id
WHERE a.endpoint_id = $1
ORDER BY a.id DESC
LIMIT $2
