-- Deliveries and attempts go with the endpoint (ON DELETE CASCADE); messages stay.
DELETE FROM webhook_endpoints WHERE id = $1
