DELETE FROM group_members WHERE tournament = $1 AND user_id = $2
