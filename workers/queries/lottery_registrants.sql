-- The registrant list to freeze: each user once, with the group of their first registration;
-- those who withdrew before the freeze are not drawn.
SELECT DISTINCT ON (user_id) user_id, grp FROM registrations r
WHERE tournament = $1
  AND NOT EXISTS (SELECT 1 FROM registration_statuses s
                  WHERE s.tournament = $1 AND s.user_id = r.user_id AND s.status = 'withdrawn')
ORDER BY user_id, stream_seq
