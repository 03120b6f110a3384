-- A new secret; the current one keeps signing (beside it) until now + $3 seconds.
UPDATE webhook_endpoints
SET previous_secret = secret, previous_until = now() + make_interval(secs => $3), secret = $2
WHERE id = $1
