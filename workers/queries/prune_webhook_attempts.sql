-- Attempts logged before the retention ($1 seconds), oldest first, at most $2.
DELETE FROM webhook_attempts WHERE id IN (
    SELECT id FROM webhook_attempts
    WHERE attempted_at < now() - make_interval(secs => $1)
    ORDER BY attempted_at LIMIT $2)
