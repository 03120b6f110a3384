-- A page of a tournament's uploads, newest first, after the cursor's (received_at, media_id)
-- when one is given: keyset paging, so uploads arriving meanwhile never shift a page.
SELECT media_id, tournament, content_type, bytes, received_at, user_id, status, reason,
       variants::text AS variants
FROM media_overview
WHERE tournament = $1
  AND ($2::timestamptz IS NULL OR (received_at, media_id) < ($2, $3))
ORDER BY received_at DESC, media_id DESC
LIMIT $4
