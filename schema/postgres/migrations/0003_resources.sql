-- Polls, arenas and tournaments as operators define them (issue 4). The definition is the
-- admin API's JSON body, validated by tally-schema before it is stored; ingest keeps every
-- definition in memory and reloads them when told a resource changed.
CREATE TABLE resources (
    kind        text NOT NULL CHECK (kind IN ('poll', 'arena', 'tournament')),
    id          text NOT NULL,
    definition  jsonb NOT NULL,
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, id)
);

-- Admin API keys, stored only as SHA-256 hashes of the key (keys are 256 random bits, so a
-- slow password hash would add nothing). role: admin (everything) or viewer (reads only).
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('admin', 'viewer')),
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- How a score combined with the standing (add, replace, max, min), stamped by ingest from the
-- tournament's operator and sort order; rebuilds apply the same rule.
ALTER TABLE scores ADD COLUMN effect text NOT NULL DEFAULT 'add';

-- Each voter's current choice per poll: the latest of their votes in stream order replaces the
-- earlier ones. A retried event is stored once (event_id is the key), so a late copy of an old
-- vote cannot win over a newer vote. Served by poll_votes_poll_voter.
CREATE VIEW poll_choices AS
SELECT DISTINCT ON (poll, voter) poll, voter, options, stream_seq, event_id, received_at
FROM poll_votes
ORDER BY poll, voter, stream_seq DESC;
