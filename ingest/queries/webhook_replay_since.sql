-- The endpoint's messages (by its subscription) since $2, at most $4 of them: those it never
-- had or that failed, and with $3 the delivered ones too, queued again. Answers the time of
-- the last message looked at.
WITH picked AS (
    SELECT m.id, m.created_at
    FROM webhook_messages m JOIN webhook_endpoints e ON e.id = $1
    WHERE m.created_at >= $2
      AND (cardinality(e.event_types) = 0 OR m.event_type = ANY (e.event_types))
    ORDER BY m.created_at
    LIMIT $4
), queued AS (
    INSERT INTO webhook_deliveries (message_id, endpoint_id)
    SELECT id, $1 FROM picked
    ON CONFLICT (message_id, endpoint_id) DO UPDATE
    SET status = 'pending', attempts = 0, next_attempt_at = now(), queued_at = NULL
    WHERE webhook_deliveries.status = 'failed'
       OR ($3 AND webhook_deliveries.status = 'delivered')
    RETURNING 1
)
SELECT (SELECT count(*) FROM queued) AS replayed,
       (SELECT count(*) FROM picked) AS looked_at,
       (SELECT max(created_at) FROM picked) AS last
