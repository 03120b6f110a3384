INSERT INTO group_members (tournament, user_id, grp)
SELECT $1, u, g FROM UNNEST($2::text[], $3::text[]) AS m(u, g)
ON CONFLICT (tournament, user_id) DO UPDATE
    SET grp = EXCLUDED.grp, added_at = now(), change_seq = nextval('group_member_changes')
