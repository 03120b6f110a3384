-- The status changes that decide one registrant's state (fallback read): their own, and all
-- of every registrant up the chain of releases that promoted them (whether a release applied
-- depends on the releaser's own state, which a release that promoted them may have made), in
-- stream order.
WITH RECURSIVE chain(user_id) AS (
    SELECT $2::text
    UNION
    SELECT r.user_id FROM registration_status_changes r JOIN chain c ON r.promoted = c.user_id
    WHERE r.tournament = $1
)
SELECT user_id, status, position, deadline, promoted FROM registration_status_changes
WHERE tournament = $1 AND user_id IN (SELECT user_id FROM chain)
ORDER BY stream_seq
