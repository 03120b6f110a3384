SELECT kind, id, definition::text FROM resources
