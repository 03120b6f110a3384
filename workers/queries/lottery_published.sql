-- Lottery tournaments whose drawn statuses are all on the stream (releases may follow).
SELECT r.id, r.definition::text FROM resources r
JOIN lottery_draws d ON d.tournament = r.id
WHERE r.kind = 'tournament' AND d.statuses_published_at IS NOT NULL
