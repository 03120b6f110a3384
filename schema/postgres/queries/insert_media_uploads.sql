INSERT INTO media_uploads (event_id, stream_seq, received_at, tournament, media_id, object_key, content_type, bytes, user_id)
SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::text[])
ON CONFLICT (event_id) DO NOTHING
