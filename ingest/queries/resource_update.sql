UPDATE resources SET definition = $3::jsonb, version = version + 1, updated_at = $4
WHERE kind = $1 AND id = $2
