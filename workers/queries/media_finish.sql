-- A thumbnail job's result: done with the variants, or failed with the reason; answers the
-- upload's tournament (for the webhook that reports it).
UPDATE media_status SET status = $2, reason = $3, variants = $4::jsonb, updated_at = now()
WHERE media_id = $1
RETURNING (SELECT tournament FROM media_uploads u WHERE u.media_id = $1 LIMIT 1)
