-- Broadcast channels (issue 19) are resources like polls: their definitions live here, their
-- messages in a JetStream stream per channel.
ALTER TABLE resources DROP CONSTRAINT resources_kind_check;
ALTER TABLE resources ADD CONSTRAINT resources_kind_check
    CHECK (kind IN ('poll', 'arena', 'tournament', 'channel'));
