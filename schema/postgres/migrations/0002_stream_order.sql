-- Replaying events in stream order (the aggregator's rebuild) pages through every table by
-- stream sequence.
CREATE INDEX poll_votes_seq ON poll_votes (stream_seq);
CREATE INDEX pair_votes_seq ON pair_votes (stream_seq);
CREATE INDEX scores_seq ON scores (stream_seq);
CREATE INDEX registrations_seq ON registrations (stream_seq);
CREATE INDEX media_uploads_seq ON media_uploads (stream_seq);
