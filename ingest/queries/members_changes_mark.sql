-- Under members_read_lock.sql: every change numbered up to this mark is committed.
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM group_member_changes
