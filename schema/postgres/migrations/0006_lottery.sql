-- Lottery draws (issue 5, tally-draw-v1; see schema/src/lottery.rs and docs/lottery.md). The
-- seed is made, and its SHA-256 commitment published, when a lottery tournament is defined;
-- the seed stays secret until the draw, which freezes the registrants and records everything
-- a verifier needs. drawn_at IS NULL until then; the draw job locks the row, so a second
-- trigger finds it drawn and changes nothing.
CREATE TABLE lottery_draws (
    tournament   text PRIMARY KEY,
    algorithm    text NOT NULL,
    seed         bytea NOT NULL,
    commitment   bytea NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    -- When the scheduler last queued a draw job (at most one every five minutes).
    draw_requested_at timestamptz,
    drawn_at     timestamptz,
    -- When every registrant's drawn status was on the stream.
    statuses_published_at timestamptz,
    digest       bytea,
    capacity     integer,
    weights      jsonb,
    registrants  jsonb,
    winners      jsonb,
    waitlist     jsonb
);
