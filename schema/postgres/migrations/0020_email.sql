-- Winners' email. An address is personal data: it lives in registrant_contacts only (never
-- on the stream, in Redis, ClickHouse or a public record), written by ingest at registration
-- for tournaments that email.
CREATE TABLE registrant_contacts (
    tournament text NOT NULL,
    user_id    text NOT NULL,
    email      text NOT NULL,
    time_zone  text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tournament, user_id)
);

-- One email per registration message that mails (won, promoted), recorded with the message
-- (so exactly when the webhook is) and sent by the workers' email jobs, at least once.
CREATE TABLE email_outbox (
    id              text PRIMARY KEY,                -- the webhook message's id
    tournament      text NOT NULL,
    user_id         text NOT NULL,
    event_type      text NOT NULL,
    deadline        timestamptz,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'queued', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz,
    sent_at         timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX email_outbox_queued ON email_outbox (queued_at) WHERE status = 'queued';
