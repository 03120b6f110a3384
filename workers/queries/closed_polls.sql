-- Polls whose window closed before $1 (the workers tell each once, `poll.closed`).
SELECT id, definition::text FROM resources
WHERE kind = 'poll' AND definition ? 'closes_at'
  AND (definition->>'closes_at')::timestamptz <= $1
