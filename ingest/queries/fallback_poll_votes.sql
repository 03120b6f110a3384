-- A poll's current votes per option (fallback read; schema view poll_option_votes).
SELECT option, votes FROM poll_option_votes WHERE poll = $1
