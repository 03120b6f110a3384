SELECT max(stream_seq) FROM pair_votes WHERE arena = $1
