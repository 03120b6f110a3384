DELETE FROM webhook_deliveries WHERE message_id = ANY($1)
