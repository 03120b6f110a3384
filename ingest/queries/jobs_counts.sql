SELECT coalesce(json_agg(c ORDER BY c.job_type, c.status), '[]')::text FROM
(SELECT job_type, status, count(*) AS jobs FROM apalis.jobs GROUP BY 1, 2) c
