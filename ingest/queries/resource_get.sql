SELECT version, definition::text FROM resources WHERE kind = $1 AND id = $2
