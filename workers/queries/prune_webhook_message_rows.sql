DELETE FROM webhook_messages WHERE id = ANY($1)
