-- Finished messages (no delivery pending or queued) recorded before the retention ($1
-- seconds), oldest first, at most $2: their ids, to delete with their deliveries.
SELECT m.id FROM webhook_messages m
WHERE m.created_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                  WHERE d.message_id = m.id AND d.status IN ('pending', 'queued'))
ORDER BY m.created_at
LIMIT $2
