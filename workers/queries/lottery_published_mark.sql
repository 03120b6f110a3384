UPDATE lottery_draws SET statuses_published_at = now() WHERE tournament = $1
