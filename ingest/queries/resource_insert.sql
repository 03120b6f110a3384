INSERT INTO resources (kind, id, definition) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (kind, id) DO NOTHING
