-- Thumbnail processing per upload (issue 5): queued when the scheduler finds an upload, then
-- done with its variants, or failed with the reason (corrupt, hostile or unsupported image).
CREATE TABLE media_status (
    media_id   text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('queued', 'done', 'failed')),
    reason     text,
    variants   jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
