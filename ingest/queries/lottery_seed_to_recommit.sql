SELECT seed FROM lottery_draws WHERE tournament = $1 AND algorithm = $2
AND drawn_at IS NULL AND rules IS DISTINCT FROM $3
