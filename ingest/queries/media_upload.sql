SELECT media_id, tournament, content_type, bytes, received_at, user_id, status, reason,
       variants::text AS variants
FROM media_overview WHERE media_id = $1
