-- The membership changes after mark $1 up to mark $2, in the order they were made: an upsert
-- carries the group, a removal none.
SELECT change_seq, tournament, user_id, grp FROM group_members
WHERE change_seq > $1 AND change_seq <= $2
UNION ALL
SELECT change_seq, tournament, user_id, NULL FROM group_member_removals
WHERE change_seq > $1 AND change_seq <= $2
ORDER BY change_seq
