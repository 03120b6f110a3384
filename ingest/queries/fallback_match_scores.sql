-- One match's scores in stream order, to fold into its ranking (fallback read).
SELECT team, effect, points FROM match_score_effects
WHERE tournament = $1 AND match_id = $2
ORDER BY stream_seq
