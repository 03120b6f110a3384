-- Whether a voter has a current vote in a poll (fallback read).
SELECT EXISTS (SELECT 1 FROM poll_choices WHERE poll = $1 AND voter = $2)
