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

-- Wins and losses per arena item and minute.
CREATE MATERIALIZED VIEW IF NOT EXISTS pair_results_per_minute
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (arena, item, minute)
AS SELECT scope AS arena, tupleElement(r, 1) AS item, toStartOfMinute(received_at) AS minute,
          sum(tupleElement(r, 2)) AS wins, sum(tupleElement(r, 3)) AS losses
FROM events
ARRAY JOIN [(items[1], toUInt64(1), toUInt64(0)), (items[2], toUInt64(0), toUInt64(1))] AS r
WHERE kind = 'pair_vote'
GROUP BY arena, item, minute;

-- Score events and points per tournament, team and minute.
CREATE MATERIALIZED VIEW IF NOT EXISTS scores_per_minute
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tournament, team, minute)
AS SELECT scope AS tournament, actor AS team, toStartOfMinute(received_at) AS minute,
          count() AS score_events, sum(points) AS points
FROM events WHERE kind = 'score'
GROUP BY tournament, team, minute;

-- Registrations per tournament, priority group ('' for none) and minute.
CREATE MATERIALIZED VIEW IF NOT EXISTS registrations_per_minute
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tournament, grp, minute)
AS SELECT scope AS tournament, if(empty(items), '', items[1]) AS grp,
          toStartOfMinute(received_at) AS minute, count() AS registrations
FROM events WHERE kind = 'registration'
GROUP BY tournament, grp, minute;
