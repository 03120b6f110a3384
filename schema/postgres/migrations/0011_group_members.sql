-- The operator's priority-group membership list: a registrant's group comes from it (or from
-- their token, or a site key), never from the registration's body. Ingest holds it in memory.
CREATE TABLE group_members (
    tournament  text NOT NULL,
    user_id     text NOT NULL,
    grp         text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tournament, user_id)
);

-- Not granted to tally_reader: with the public draw's groups it would narrow who a
-- pseudonym is.
