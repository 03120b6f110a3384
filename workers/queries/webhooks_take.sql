-- A delivery job takes what it was handed, if still under the lease it was handed with (a
-- requeued delivery has a new lease and another job), renewing the lease; answers what to
-- send and where.
WITH taken AS (
    UPDATE webhook_deliveries d SET queued_at = clock_timestamp()
    FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS j(message_id, endpoint_id, queued_at)
    WHERE d.message_id = j.message_id AND d.endpoint_id = j.endpoint_id
      AND d.status = 'queued' AND d.queued_at = j.queued_at
    RETURNING d.message_id, d.endpoint_id, d.attempts, d.queued_at
)
SELECT t.message_id, t.endpoint_id, t.attempts, t.queued_at, m.body, e.url, e.secret,
       CASE WHEN e.previous_until > now() THEN e.previous_secret END AS previous_secret
FROM taken t
JOIN webhook_messages m ON m.id = t.message_id
JOIN webhook_endpoints e ON e.id = t.endpoint_id AND e.disabled_at IS NULL
