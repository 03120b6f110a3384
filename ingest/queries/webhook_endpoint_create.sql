INSERT INTO webhook_endpoints (id, url, event_types, description, secret)
VALUES ($1, $2, $3, $4, $5)
