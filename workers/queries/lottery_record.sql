UPDATE lottery_draws SET drawn_at = $2, digest = $3, capacity = $4,
       weights = $5::jsonb, registrants = $6::jsonb, winners = $7::jsonb,
       waitlist = $8::jsonb, public_registrants = $9::jsonb,
       public_winners = $10::jsonb, public_waitlist = $11::jsonb
WHERE tournament = $1
