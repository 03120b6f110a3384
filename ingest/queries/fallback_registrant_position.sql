-- A registrant's position in stream order counting only those still registered (those ahead
-- who withdrew no longer count), 0 when not registered (fallback read): one row per user.
SELECT count(*) FROM registrants r
WHERE r.tournament = $1
  AND r.stream_seq <= (SELECT stream_seq FROM registrants WHERE tournament = $1 AND user_id = $2)
  AND (r.user_id = $2 OR NOT EXISTS (
      SELECT 1 FROM registration_status_changes s
      WHERE s.tournament = $1 AND s.user_id = r.user_id AND s.status = 'withdrawn'))
