-- One message to one endpoint again, whatever became of it before (unless a job holds it).
INSERT INTO webhook_deliveries (message_id, endpoint_id)
SELECT m.id, e.id FROM webhook_messages m, webhook_endpoints e WHERE m.id = $2 AND e.id = $1
ON CONFLICT (message_id, endpoint_id) DO UPDATE
SET status = 'pending', attempts = 0, next_attempt_at = now(), queued_at = NULL
WHERE webhook_deliveries.status <> 'queued'
