-- A tournament's standings as one row per team and effect (fallback read): what each effect
-- leaves of a team's scores (add: the sum, replace: the latest, max, min), so ingest folds a
-- row per team instead of every score. A team with two effects (the operator changed
-- mid-way) needs the scores in order instead (fallback_scores.sql).
SELECT team, effect, sum(points)::bigint, max(points), min(points),
       (array_agg(points ORDER BY stream_seq DESC))[1]
FROM score_effects WHERE tournament = $1
GROUP BY team, effect
