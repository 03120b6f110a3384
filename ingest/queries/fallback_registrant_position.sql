-- A registrant's position in stream order, 0 when not registered (fallback read): one row
-- per user, so the position is how many registered at or before them.
SELECT count(*) FROM registrants
WHERE tournament = $1
  AND stream_seq <= (SELECT stream_seq FROM registrants WHERE tournament = $1 AND user_id = $2)
