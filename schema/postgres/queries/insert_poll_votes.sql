INSERT INTO poll_votes (event_id, stream_seq, received_at, poll, voter, options)
SELECT id, seq, at, poll, voter, string_to_array(opts, ',')
FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
    AS u (id, seq, at, poll, voter, opts)
ON CONFLICT (event_id) DO NOTHING
