-- Every stored event as the JSON of its `Event` (schema/src/event.rs), whatever its table: the
-- one row -> event mapping. The rebuild of the Redis views pages through it in stream order
-- and the draw reads a tournament's registrations from it; both decode `event` with the same
-- decoder the stream's consumers use. Filters on kind, scope and stream_seq reach each
-- table's own indexes (a branch whose kind cannot match is skipped).
CREATE VIEW stored_events AS
    SELECT stream_seq, event_id, received_at, 'poll_vote'::text AS kind, poll AS scope,
           jsonb_build_object('type', 'poll_vote', 'poll', poll, 'voter', voter,
                              'options', to_jsonb(options)) AS event
    FROM poll_votes
    UNION ALL
    SELECT stream_seq, event_id, received_at, 'pair_vote', arena,
           jsonb_build_object('type', 'pair_vote', 'arena', arena, 'session', session,
                              'winner', winner, 'loser', loser)
    FROM pair_votes
    UNION ALL
    SELECT stream_seq, event_id, received_at, 'score', tournament,
           jsonb_build_object('type', 'score', 'tournament', tournament, 'match', match_id,
                              'team', team, 'points', points, 'effect', effect)
    FROM scores
    UNION ALL
    SELECT stream_seq, event_id, received_at, 'registration', tournament,
           jsonb_build_object('type', 'registration', 'tournament', tournament,
                              'user', user_id, 'group', grp)
    FROM registrations
    UNION ALL
    SELECT stream_seq, event_id, received_at, 'media_uploaded', tournament,
           jsonb_build_object('type', 'media_uploaded', 'tournament', tournament,
                              'media', media_id, 'object_key', object_key,
                              'content_type', content_type, 'bytes', bytes, 'user', user_id)
    FROM media_uploads
    UNION ALL
    SELECT stream_seq, event_id, received_at, 'registration_status', tournament,
           jsonb_build_object('type', 'registration_status', 'tournament', tournament,
                              'user', user_id, 'status', status, 'promoted', promoted,
                              'deadline', deadline, 'position', NULLIF(position, 0))
    FROM registration_statuses;
