-- Which of these message ids are recorded already.
SELECT id FROM webhook_messages WHERE id = ANY($1)
