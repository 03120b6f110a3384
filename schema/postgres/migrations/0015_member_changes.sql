-- The membership lists' changes in the order they were made, so each ingest reads only what
-- changed since it last looked (issue 17): before, every reload (every 30 s, and after every
-- change) read every list whole, and importing a 1,000,000-member list 5,000 at a time read it
-- 200 times on every instance. Writers hold a shared advisory lock (ingest/queries/
-- members_write_lock.sql) and readers take it exclusively for an instant to learn a mark below
-- which every change is committed (members_read_lock.sql); both name the same key.
CREATE SEQUENCE group_member_changes;
ALTER TABLE group_members ADD COLUMN change_seq bigint NOT NULL DEFAULT nextval('group_member_changes');
CREATE INDEX group_members_change_seq ON group_members (change_seq);
CREATE TABLE group_member_removals (
    change_seq bigint PRIMARY KEY DEFAULT nextval('group_member_changes'),
    tournament text NOT NULL,
    user_id    text NOT NULL
);
