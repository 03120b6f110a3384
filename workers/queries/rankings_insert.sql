INSERT INTO arena_rankings (arena, item, rank, rating, ci_low, ci_high, wins, losses)
SELECT $1, * FROM UNNEST($2::text[], $3::int4[], $4::float8[], $5::float8[],
                         $6::float8[], $7::int8[], $8::int8[])
