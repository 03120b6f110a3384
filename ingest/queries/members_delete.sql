-- The removal is recorded with its place among the changes, for the other instances.
WITH gone AS (DELETE FROM group_members WHERE tournament = $1 AND user_id = $2
              RETURNING tournament, user_id)
INSERT INTO group_member_removals (tournament, user_id) SELECT tournament, user_id FROM gone
