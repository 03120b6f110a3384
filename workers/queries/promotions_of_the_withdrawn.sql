-- Of these promotions ($1 tournaments, $2 promoted users, $3 the promoting change's stream
-- sequence), those whose user had withdrawn earlier in the stream: the batch script promotes
-- nobody then (it frees the place again), so nobody is told of a promotion.
SELECT p.tournament, p.user_id, p.seq
FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS p(tournament, user_id, seq)
WHERE EXISTS (SELECT 1 FROM registration_statuses s
              WHERE s.tournament = p.tournament AND s.user_id = p.user_id
                AND s.status = 'withdrawn' AND s.stream_seq < p.seq)
