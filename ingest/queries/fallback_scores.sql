-- A tournament's scores in stream order, to fold into standings (fallback read).
SELECT team, effect, points FROM score_effects WHERE tournament = $1 ORDER BY stream_seq
