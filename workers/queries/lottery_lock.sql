-- The draw's row, locked for the transaction: a second job waits, then finds it drawn.
SELECT seed, drawn_at, winners::text AS winners, waitlist::text AS waitlist,
       statuses_published_at IS NOT NULL AS statuses_published, pseudonym_key, rules
FROM lottery_draws WHERE tournament = $1 FOR UPDATE
