INSERT INTO lottery_draws (tournament, algorithm, seed, commitment, pseudonym_key, rules)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tournament) DO NOTHING
