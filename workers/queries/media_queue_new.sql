-- Queues a thumbnail job ($1: the queued status) for each upload nobody has queued yet.
INSERT INTO media_status (media_id, status)
SELECT m.media_id, $1 FROM media_uploads m
LEFT JOIN media_status s ON s.media_id = m.media_id
WHERE s.media_id IS NULL
LIMIT 500
ON CONFLICT (media_id) DO NOTHING
RETURNING media_id, (SELECT object_key FROM media_uploads u
                     WHERE u.media_id = media_status.media_id LIMIT 1)
