-- Deliveries whose job has held them past the lease (its worker died, or its job was lost
-- between claim and push) go back to pending; their next attempt is due already.
UPDATE webhook_deliveries SET status = 'pending', queued_at = NULL
WHERE status = 'queued' AND queued_at < now() - make_interval(secs => $1)
