INSERT INTO registration_statuses
    (event_id, stream_seq, received_at, tournament, user_id, status, promoted, deadline, position)
SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::timestamptz[], $9::int8[])
ON CONFLICT (event_id) DO NOTHING
