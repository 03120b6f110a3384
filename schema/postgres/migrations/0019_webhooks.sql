-- Outbound webhooks (Standard Webhooks). Messages are the outbox: each is written in the
-- transaction that makes what it reports (a stored status change, a thumbnail result, a match
-- set final), named by an id derived from that source, and fanned out in the same statement
-- to a delivery per subscribed endpoint. Deliveries are the queue the workers' scheduler
-- hands to apalis jobs; attempts are the log operators read.

CREATE TABLE webhook_endpoints (
    id                   text PRIMARY KEY,             -- ep_…, server-made
    url                  text NOT NULL,
    event_types          text[] NOT NULL,              -- empty: every type
    description          text,
    secret               text NOT NULL,                -- whsec_…
    previous_secret      text,                         -- still signs until previous_until
    previous_until       timestamptz,
    disabled_at          timestamptz,
    disabled_reason      text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    failing_since        timestamptz,
    retry_at             timestamptz,                  -- backing off until then
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_messages (
    id         text PRIMARY KEY,                       -- msg_…, the webhook-id
    event_type text NOT NULL,
    body       text NOT NULL,                          -- the exact bytes every attempt sends
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_messages_created ON webhook_messages (created_at);

CREATE TABLE webhook_deliveries (
    message_id      text NOT NULL REFERENCES webhook_messages (id),
    endpoint_id     text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'queued', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz,                       -- the lease a delivery job holds
    delivered_at    timestamptz,
    PRIMARY KEY (message_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_queued ON webhook_deliveries (endpoint_id, queued_at)
    WHERE status = 'queued';

CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    message_id   text NOT NULL,
    endpoint_id  text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,                              -- absent: no answer (see error)
    latency_ms   integer NOT NULL,
    error        text,
    excerpt      text                                  -- the answer's first bytes
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id) WHERE status = 'failed';
