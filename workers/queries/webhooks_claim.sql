-- Due deliveries, at most $1 in all; per endpoint, what its in-flight allowance leaves: $2
-- for a healthy endpoint, one (a probe) for a failing one, none while it backs off or is
-- disabled. Each is marked queued with a fresh lease (queued_at), which the job must match.
WITH open AS (
    SELECT e.id,
           CASE WHEN e.consecutive_failures > 0 THEN 1 ELSE $2 END
             - (SELECT count(*) FROM webhook_deliveries q
                WHERE q.endpoint_id = e.id AND q.status = 'queued') AS room
    FROM webhook_endpoints e
    WHERE e.disabled_at IS NULL AND (e.retry_at IS NULL OR e.retry_at <= now())
),
due AS (
    SELECT d.message_id, d.endpoint_id
    FROM open o CROSS JOIN LATERAL (
        SELECT message_id, endpoint_id FROM webhook_deliveries d
        WHERE d.endpoint_id = o.id AND d.status = 'pending' AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at
        LIMIT greatest(o.room, 0)
        FOR UPDATE SKIP LOCKED
    ) d
    LIMIT $1
)
UPDATE webhook_deliveries d SET status = 'queued', queued_at = clock_timestamp()
FROM due WHERE d.message_id = due.message_id AND d.endpoint_id = due.endpoint_id
RETURNING d.message_id, d.endpoint_id, d.queued_at
