-- First-come registrants who moved up into a place: registered beyond the capacity ($2),
-- within it now that some ahead withdrew, and not announced yet; with the place they hold.
WITH firsts AS (
    SELECT DISTINCT ON (user_id) user_id, stream_seq FROM registrations
    WHERE tournament = $1 ORDER BY user_id, stream_seq
), ranked AS (
    SELECT g.user_id, row_number() OVER (ORDER BY g.stream_seq) AS raw,
           EXISTS (SELECT 1 FROM registration_statuses s
                   WHERE s.tournament = $1 AND s.user_id = g.user_id
                     AND s.status = 'withdrawn') AS gone
    FROM firsts g
), live AS (
    SELECT user_id, raw, row_number() OVER (ORDER BY raw) AS place FROM ranked WHERE NOT gone
)
SELECT l.user_id, l.place FROM live l
WHERE l.raw > $2 AND l.place <= $2
  AND NOT EXISTS (SELECT 1 FROM registration_statuses s
                  WHERE s.tournament = $1 AND s.user_id = l.user_id AND s.status = 'promoted')
ORDER BY l.place
