-- Queues again what was queued ($1) more than ten minutes ago without a result.
UPDATE media_status s SET updated_at = now()
FROM media_uploads m
WHERE m.media_id = s.media_id AND s.status = $1
  AND s.updated_at < now() - interval '10 minutes'
RETURNING s.media_id, m.object_key
