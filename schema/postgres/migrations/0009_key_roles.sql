-- Two more key roles: `scorekeeper` (may post scores to tournaments that take them from keys)
-- and `site` (an organiser's backend, which vouches for the user it names).
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('admin', 'viewer', 'scorekeeper', 'site'));

-- Ingest holds the active key hashes in memory (a junk key must not cost a query); a change
-- to the keys tells every instance to read them again at once.
CREATE OR REPLACE FUNCTION tally_api_keys_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('tally_api_keys', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tally_api_keys_changed();
