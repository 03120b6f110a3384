SELECT tournament, pseudonym_key FROM lottery_draws WHERE pseudonym_key IS NOT NULL
