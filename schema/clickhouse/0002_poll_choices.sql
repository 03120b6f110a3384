-- Each voter's current choice per poll, beside the raw stream: the vote with the highest
-- stream sequence wins (ReplacingMergeTree keeps it when parts merge). Read it with argMax so
-- the answer is exact before merges too:
--   SELECT option, count() AS voters
--   FROM (SELECT voter, argMax(options, seq) AS current FROM poll_choices
--         WHERE poll = 'final' GROUP BY voter)
--   ARRAY JOIN current AS option GROUP BY option
CREATE MATERIALIZED VIEW IF NOT EXISTS poll_choices
ENGINE = ReplacingMergeTree(seq)
PARTITION BY tuple()
ORDER BY (poll, voter)
AS SELECT scope AS poll, actor AS voter, seq, items AS options, received_at
FROM events WHERE kind = 'poll_vote';
