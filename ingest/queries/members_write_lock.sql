-- Held by every transaction that changes a membership list, shared: writers never wait for
-- each other, and a reader taking it exclusively knows no change is in flight.
SELECT pg_advisory_xact_lock_shared(hashtext('tally.group_member_changes'))
