-- Each email's attempt: sent, pending again after retry_secs, or failed (no retry left).
UPDATE email_outbox e
SET attempts = e.attempts + 1,
    queued_at = NULL,
    status = CASE WHEN o.sent THEN 'sent' WHEN o.retry_secs IS NULL THEN 'failed' ELSE 'pending' END,
    sent_at = CASE WHEN o.sent THEN now() ELSE e.sent_at END,
    last_error = o.error,
    next_attempt_at = CASE WHEN o.retry_secs IS NULL THEN e.next_attempt_at
                           ELSE now() + make_interval(secs => o.retry_secs) END
FROM UNNEST($1::text[], $2::bool[], $3::float8[], $4::text[]) AS o(id, sent, retry_secs, error)
WHERE e.id = o.id
