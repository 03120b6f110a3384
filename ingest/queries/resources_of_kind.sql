SELECT id, version, definition::text FROM resources WHERE kind = $1 ORDER BY id
