-- Messages ($1 ids, $2 types, $3 bodies), each stored once (the same source makes the same
-- id), and for each new one a delivery to every endpoint subscribed to its type, disabled
-- ones included (they get it once re-enabled).
WITH new AS (
    INSERT INTO webhook_messages (id, event_type, body)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
    ON CONFLICT (id) DO NOTHING
    RETURNING id, event_type
)
INSERT INTO webhook_deliveries (message_id, endpoint_id)
SELECT new.id, e.id
FROM new JOIN webhook_endpoints e
    ON cardinality(e.event_types) = 0 OR new.event_type = ANY (e.event_types)
