-- Enabled ($2) with a clean slate (its waiting deliveries go out at once), or disabled.
UPDATE webhook_endpoints
SET disabled_at = CASE WHEN $2 THEN NULL ELSE coalesce(disabled_at, now()) END,
    disabled_reason = CASE WHEN $2 THEN NULL ELSE coalesce(disabled_reason, 'disabled by an operator') END,
    consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures END,
    failing_since = CASE WHEN $2 THEN NULL ELSE failing_since END,
    retry_at = CASE WHEN $2 THEN NULL ELSE retry_at END
WHERE id = $1
