-- Endpoints' health after a job's attempts ($1 ids, $2 delivered, $3 failed): any delivery
-- makes it healthy; otherwise it backs off by $4 (the retry schedule, indexed by its
-- failures in a row) and is disabled once failing for longer than $5 seconds.
UPDATE webhook_endpoints e
SET consecutive_failures = CASE WHEN h.ok > 0 THEN 0 ELSE e.consecutive_failures + h.failed END,
    failing_since = CASE WHEN h.ok > 0 THEN NULL ELSE coalesce(e.failing_since, now()) END,
    retry_at = CASE WHEN h.ok > 0 THEN NULL
                    ELSE now() + make_interval(secs =>
                        ($4::float8[])[least(e.consecutive_failures + h.failed, cardinality($4::float8[]))])
               END,
    disabled_at = CASE WHEN h.ok = 0 AND e.disabled_at IS NULL
                            AND e.failing_since < now() - make_interval(secs => $5)
                       THEN now() ELSE e.disabled_at END,
    disabled_reason = CASE WHEN h.ok = 0 AND e.disabled_at IS NULL
                                AND e.failing_since < now() - make_interval(secs => $5)
                           THEN 'failing since ' || e.failing_since::text
                           ELSE e.disabled_reason END
FROM UNNEST($1::text[], $2::int4[], $3::int4[]) AS h(id, ok, failed)
WHERE e.id = h.id
RETURNING e.id, coalesce(e.disabled_at = now(), false) AS disabled_now
