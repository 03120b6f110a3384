-- Endpoints with their delivery counts (partial indexes keep the counts to what waits or
-- failed); one when $1 names it, all (oldest first) when $1 is NULL.
SELECT e.id, e.url, e.event_types, e.description, e.disabled_at, e.disabled_reason,
       e.consecutive_failures, e.failing_since, e.retry_at,
       CASE WHEN e.previous_until > now() THEN e.previous_until END AS previous_secret_until,
       e.created_at,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'queued')) AS pending,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'failed') AS failed
FROM webhook_endpoints e
WHERE $1::text IS NULL OR e.id = $1
ORDER BY e.created_at, e.id
LIMIT 1000
