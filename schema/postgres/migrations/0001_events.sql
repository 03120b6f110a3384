-- One table per event kind. The event id is the key: inserting with ON CONFLICT DO NOTHING
-- is how every redelivery becomes harmless. stream_seq is JetStream's total order (first-come
-- registration uses it); received_at is when ingest accepted the event.

CREATE TABLE poll_votes (
    event_id    uuid PRIMARY KEY,
    stream_seq  bigint NOT NULL,
    received_at timestamptz NOT NULL,
    poll        text NOT NULL,
    voter       text NOT NULL,
    options     text[] NOT NULL
);
-- A voter's latest vote per poll (single-choice polls: the later vote replaces the earlier).
CREATE INDEX poll_votes_poll_voter ON poll_votes (poll, voter, stream_seq DESC);
-- Turnout over time per poll.
CREATE INDEX poll_votes_poll_time ON poll_votes (poll, received_at);

CREATE TABLE pair_votes (
    event_id    uuid PRIMARY KEY,
    stream_seq  bigint NOT NULL,
    received_at timestamptz NOT NULL,
    arena       text NOT NULL,
    session     text NOT NULL,
    winner      text NOT NULL,
    loser       text NOT NULL
);
-- Elo replays an arena in stream order; Bradley–Terry reads all of an arena's votes.
CREATE INDEX pair_votes_arena_seq ON pair_votes (arena, stream_seq);
-- Personal rankings per session.
CREATE INDEX pair_votes_arena_session ON pair_votes (arena, session);

CREATE TABLE scores (
    event_id    uuid PRIMARY KEY,
    stream_seq  bigint NOT NULL,
    received_at timestamptz NOT NULL,
    tournament  text NOT NULL,
    match_id    text NOT NULL,
    team        text NOT NULL,
    points      bigint NOT NULL
);
-- Standings per team, in stream order (score operators "best" and "set" depend on order).
CREATE INDEX scores_tournament_team ON scores (tournament, team, stream_seq);
CREATE INDEX scores_tournament_match ON scores (tournament, match_id);

CREATE TABLE registrations (
    event_id    uuid PRIMARY KEY,
    stream_seq  bigint NOT NULL,
    received_at timestamptz NOT NULL,
    tournament  text NOT NULL,
    user_id     text NOT NULL,
    grp         text
);
-- First-come seats go in stream order; a user's repeat registrations find the first one.
CREATE INDEX registrations_tournament_seq ON registrations (tournament, stream_seq);
CREATE INDEX registrations_tournament_user ON registrations (tournament, user_id, stream_seq);

CREATE TABLE media_uploads (
    event_id     uuid PRIMARY KEY,
    stream_seq   bigint NOT NULL,
    received_at  timestamptz NOT NULL,
    tournament   text NOT NULL,
    media_id     text NOT NULL,
    object_key   text NOT NULL,
    content_type text NOT NULL,
    bytes        bigint NOT NULL,
    user_id      text
);
CREATE INDEX media_uploads_tournament ON media_uploads (tournament, received_at);
CREATE INDEX media_uploads_media ON media_uploads (media_id);
