-- What ingest reads for one match while Redis cannot answer (issue 18): the match's score
-- events with how each combines, folded in stream order like the standings.
CREATE VIEW match_score_effects AS
SELECT tournament, match_id, team, effect, points, stream_seq FROM scores;
