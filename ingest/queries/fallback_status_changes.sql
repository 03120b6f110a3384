-- The status changes that decide one registrant's state (fallback read): their own, and
-- all of every registrant whose release named them (whether that release applied depends on
-- the releaser's own state), in stream order.
SELECT user_id, status, position, deadline, promoted FROM registration_status_changes
WHERE tournament = $1
  AND (user_id = $2
       OR user_id IN (SELECT user_id FROM registration_status_changes
                      WHERE tournament = $1 AND promoted = $2))
ORDER BY stream_seq
