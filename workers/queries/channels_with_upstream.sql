SELECT id, definition::text FROM resources WHERE kind = 'channel' AND definition ? 'upstream' ORDER BY id
