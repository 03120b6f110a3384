SELECT coalesce(json_agg(j.row ORDER BY j.run_at DESC), '[]')::text FROM
(SELECT to_jsonb(x) - 'job' AS row, x.run_at FROM apalis.jobs x
 WHERE $1::text IS NULL OR x.status = $1 ORDER BY x.run_at DESC LIMIT $2) j
