-- What ingest serves from tables the workers write, as views the schema defines: ingest reads
-- these, never the tables, so a change of the workers' tables changes a view, not ingest.

-- An upload and what became of it: stored (no thumbnail job yet), queued, done or failed.
CREATE VIEW media_overview AS
    SELECT m.media_id, m.tournament, m.content_type, m.bytes, m.received_at, m.user_id,
           coalesce(s.status, 'stored') AS status, s.reason, s.variants
    FROM media_uploads m LEFT JOIN media_status s ON s.media_id = m.media_id;

-- A lottery's public record: the commitment and rules from the start; the seed, digest and
-- lists only once drawn (v2 lists are pseudonymous, v1 records stay as they were). Never the
-- pseudonym key.
CREATE VIEW public_draws AS
    SELECT tournament, algorithm, commitment, committed_at, drawn_at, rules,
           CASE WHEN drawn_at IS NOT NULL THEN seed END AS seed,
           digest, capacity, weights,
           coalesce(public_registrants, registrants) AS registrants,
           coalesce(public_winners, winners) AS winners,
           coalesce(public_waitlist, waitlist) AS waitlist
    FROM lottery_draws;
