-- Emails whose job has held them past the lease (its worker died) go back to pending.
UPDATE email_outbox SET status = 'pending', queued_at = NULL
WHERE status = 'queued' AND queued_at < now() - make_interval(secs => $1)
