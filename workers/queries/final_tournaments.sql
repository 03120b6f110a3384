-- Tournaments with listed matches, every one of them final: no score is taken any more
-- (the workers tell each once, `tournament.final`).
SELECT id, definition::text FROM resources
WHERE kind = 'tournament'
  AND jsonb_array_length(coalesce(definition->'matches', '[]'::jsonb)) > 0
  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(definition->'matches') m
                  WHERE coalesce(m->>'status', 'scheduled') <> 'final')
