-- A thumbnail job's result: done with the variants, or failed with the reason.
UPDATE media_status SET status = $2, reason = $3, variants = $4::jsonb, updated_at = now()
WHERE media_id = $1
