-- Every registration status change (issue 5): won / waitlisted by the draw, claimed by the
-- user, released (with the waitlisted user promoted into the place) by the release job.
CREATE TABLE registration_statuses (
    event_id    uuid PRIMARY KEY,
    stream_seq  bigint NOT NULL,
    received_at timestamptz NOT NULL,
    tournament  text NOT NULL,
    user_id     text NOT NULL,
    status      text NOT NULL,
    promoted    text,
    deadline    timestamptz,
    position    bigint
);
CREATE INDEX registration_statuses_tournament_seq ON registration_statuses (tournament, stream_seq);
