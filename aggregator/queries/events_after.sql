-- The next page of events after stream sequence $1, across all kinds, in stream order.
-- Columns: stream_seq, event_id, received_at, kind, scope, a, b, c, n, d
SELECT * FROM (
    (SELECT stream_seq, event_id, received_at, 'poll_vote' AS kind, poll AS scope, voter AS a,
            array_to_string(options, ',') AS b, NULL::text AS c, NULL::bigint AS n,
            NULL::timestamptz AS d
     FROM poll_votes WHERE stream_seq > $1 ORDER BY stream_seq LIMIT $2)
    UNION ALL
    (SELECT stream_seq, event_id, received_at, 'pair_vote', arena, session, winner, loser, NULL, NULL
     FROM pair_votes WHERE stream_seq > $1 ORDER BY stream_seq LIMIT $2)
    UNION ALL
    (SELECT stream_seq, event_id, received_at, 'score', tournament, match_id, team, effect, points,
            NULL
     FROM scores WHERE stream_seq > $1 ORDER BY stream_seq LIMIT $2)
    UNION ALL
    (SELECT stream_seq, event_id, received_at, 'registration', tournament, user_id, grp, NULL, NULL,
            NULL
     FROM registrations WHERE stream_seq > $1 ORDER BY stream_seq LIMIT $2)
    UNION ALL
    (SELECT stream_seq, event_id, received_at, 'media_uploaded', tournament, media_id, object_key,
            content_type, bytes, NULL
     FROM media_uploads WHERE stream_seq > $1 ORDER BY stream_seq LIMIT $2)
    UNION ALL
    (SELECT stream_seq, event_id, received_at, 'registration_status', tournament, user_id, status,
            promoted, position, deadline
     FROM registration_statuses WHERE stream_seq > $1 ORDER BY stream_seq LIMIT $2)
) page
ORDER BY stream_seq
LIMIT $2
