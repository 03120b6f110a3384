-- Emails sent or failed, recorded before the retention ($1 seconds), oldest first, at most $2.
DELETE FROM email_outbox WHERE id IN (
    SELECT id FROM email_outbox
    WHERE status IN ('sent', 'failed') AND created_at < now() - make_interval(secs => $1)
    ORDER BY created_at LIMIT $2)
