UPDATE lottery_draws SET rules = $2, commitment = $3 WHERE tournament = $1
