INSERT INTO scores (event_id, stream_seq, received_at, tournament, match_id, team, points, effect)
SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::text[])
ON CONFLICT (event_id) DO NOTHING
