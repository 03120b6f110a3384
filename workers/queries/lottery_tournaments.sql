-- Lottery tournaments' definitions: those not drawn yet, or (with $1) every one.
SELECT r.id, r.definition::text FROM resources r
JOIN lottery_draws d ON d.tournament = r.id
WHERE r.kind = 'tournament' AND ($1 OR d.drawn_at IS NULL)
