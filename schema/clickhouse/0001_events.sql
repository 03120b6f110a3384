-- Every event, one row, for analysts. Written by the aggregator's ClickHouse sink in large
-- batches, each event exactly once (a stream-sequence high-water mark is read back before
-- each batch; ClickHouse 18.16 has no insert deduplication token).
-- actor: voter, session, team, user; items: options, [winner, loser], [match], [group], [media].
CREATE TABLE IF NOT EXISTS events (
    seq UInt64,
    id UUID,
    received_at DateTime,
    kind String,
    scope String,
    actor String,
    items Array(String),
    points Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (kind, scope, received_at, seq);

-- Votes per minute per poll and option, kept by the server as rows arrive.
CREATE MATERIALIZED VIEW IF NOT EXISTS poll_votes_per_minute
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (poll, option, minute)
AS SELECT scope AS poll, arrayJoin(items) AS option, toStartOfMinute(received_at) AS minute, count() AS votes
FROM events WHERE kind = 'poll_vote'
GROUP BY poll, option, minute;
