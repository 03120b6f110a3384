-- Attempts' outcomes: each in the log, and each delivery delivered, pending again after
-- retry_secs, or failed (no retry left).
WITH o AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int4[], $5::text[], $6::text[],
                         $7::bool[], $8::float8[])
        AS o(message_id, endpoint_id, status_code, latency_ms, error, excerpt, ok, retry_secs)
), logged AS (
    INSERT INTO webhook_attempts (message_id, endpoint_id, status_code, latency_ms, error, excerpt)
    SELECT message_id, endpoint_id, status_code, latency_ms, error, excerpt FROM o
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1,
    queued_at = NULL,
    status = CASE WHEN o.ok THEN 'delivered' WHEN o.retry_secs IS NULL THEN 'failed'
                  ELSE 'pending' END,
    delivered_at = CASE WHEN o.ok THEN now() ELSE d.delivered_at END,
    next_attempt_at = CASE WHEN o.retry_secs IS NULL THEN d.next_attempt_at
                           ELSE now() + make_interval(secs => o.retry_secs) END
FROM o WHERE d.message_id = o.message_id AND d.endpoint_id = o.endpoint_id
