-- The gallery pages a tournament's uploads newest first by (received_at, media_id).
CREATE INDEX media_uploads_gallery ON media_uploads (tournament, received_at DESC, media_id DESC);
