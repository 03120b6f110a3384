-- Deliveries a job took but did not attempt (it stopped at a failure): pending again under
-- the endpoint's backoff, no attempt counted; only while the job's lease is still theirs.
UPDATE webhook_deliveries d SET status = 'pending', queued_at = NULL
FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS j(message_id, endpoint_id, queued_at)
WHERE d.message_id = j.message_id AND d.endpoint_id = j.endpoint_id
  AND d.status = 'queued' AND d.queued_at = j.queued_at
