-- Every status change of a tournament in stream order (fallback read of a waitlisted
-- registrant's outlook: how many wait ahead, how many places are unclaimed).
SELECT user_id, status, position, deadline, promoted FROM registration_status_changes
WHERE tournament = $1
ORDER BY stream_seq
