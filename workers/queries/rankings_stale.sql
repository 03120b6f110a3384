-- Arenas with votes newer than their last fit (one index-only pass per arena through
-- pair_votes_arena_seq).
SELECT v.arena FROM
  (SELECT arena, max(stream_seq) AS last_seq FROM pair_votes GROUP BY arena) v
LEFT JOIN arena_ranking_runs r ON r.arena = v.arena
WHERE r.last_seq IS NULL OR r.last_seq < v.last_seq
