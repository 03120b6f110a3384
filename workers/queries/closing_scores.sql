-- A tournament's scores in stream order, to fold into its final standings.
SELECT team, effect, points FROM scores WHERE tournament = $1 ORDER BY stream_seq
