-- Up to $1 due emails, oldest first, marked queued with a fresh lease (queued_at).
UPDATE email_outbox e SET status = 'queued', queued_at = clock_timestamp()
WHERE e.id IN (
    SELECT id FROM email_outbox
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING e.id, e.queued_at
