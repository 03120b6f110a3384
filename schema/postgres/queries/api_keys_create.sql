-- Stores a new key's hash under a unique name: $1 id (UUIDv7), $2 name, $3 role, $4 SHA-256 of the key.
INSERT INTO api_keys (id, name, role, key_hash) VALUES ($1, $2, $3, $4)
