-- Every key's name, role, creation time and whether it is revoked; never its hash.
SELECT name, role, created_at, revoked_at IS NOT NULL AS revoked FROM api_keys ORDER BY name
