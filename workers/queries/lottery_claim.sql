-- Claims a draw job for a tournament: at most once every five minutes, so a job waiting for
-- the writer is not joined by a new one every tick.
UPDATE lottery_draws SET draw_requested_at = now()
WHERE tournament = $1 AND drawn_at IS NULL
  AND (draw_requested_at IS NULL OR draw_requested_at < now() - interval '5 minutes')
RETURNING tournament
