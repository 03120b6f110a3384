-- A poll's votes per option (each voter's latest choice).
SELECT option, votes FROM poll_option_votes WHERE poll = $1
