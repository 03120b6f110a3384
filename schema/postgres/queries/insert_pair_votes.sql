INSERT INTO pair_votes (event_id, stream_seq, received_at, arena, session, winner, loser)
SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[])
ON CONFLICT (event_id) DO NOTHING
