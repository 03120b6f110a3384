SELECT role, key_hash FROM api_keys WHERE revoked_at IS NULL
