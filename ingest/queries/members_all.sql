SELECT tournament, user_id, grp FROM group_members
