-- Retention of what was told (issue 18): the workers delete attempts, finished messages and
-- finished emails past TALLY_WEBHOOK_RETENTION_SECS, oldest first, a bounded number at a time.
CREATE INDEX webhook_attempts_at ON webhook_attempts (attempted_at);
CREATE INDEX email_outbox_finished ON email_outbox (created_at) WHERE status IN ('sent', 'failed');
