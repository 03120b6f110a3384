INSERT INTO arena_ranking_runs (arena, last_seq, votes, replicates, fitted_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (arena) DO UPDATE SET last_seq = $2, votes = $3, replicates = $4, fitted_at = $5
