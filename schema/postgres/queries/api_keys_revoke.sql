-- Revokes the active key named $1; one row affected, or none when no active key has that name.
UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL
