-- Taken exclusively for an instant by a reader: once it holds it, no writer's change is in
-- flight (writers hold it shared for their whole transaction, members_write_lock.sql).
SELECT pg_advisory_xact_lock(hashtext('tally.group_member_changes'))
