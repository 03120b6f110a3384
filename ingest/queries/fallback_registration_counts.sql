-- Registrants per group of a tournament (fallback read; NULL: no group).
SELECT grp, count(*) FROM registrants WHERE tournament = $1 GROUP BY grp
