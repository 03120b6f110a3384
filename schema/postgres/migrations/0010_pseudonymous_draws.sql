-- tally-draw-v2 (docs/lottery.md): the public record names no one. Each lottery has a secret
-- pseudonym key (receipts and pseudonyms are derived from it; it is never published), the
-- committed rules text, and the public record's pseudonymous lists beside the private ones
-- (user ids) that the workers need to publish statuses and promote from the waitlist.
ALTER TABLE lottery_draws
    ADD COLUMN pseudonym_key bytea,
    ADD COLUMN rules text,
    ADD COLUMN public_registrants jsonb,
    ADD COLUMN public_winners jsonb,
    ADD COLUMN public_waitlist jsonb;

-- A read-only role for analysts and dashboards: every table, but of the draws only what the
-- public record shows. Created where the migrating user may create roles; elsewhere an
-- operator creates it (docs/lottery.md) and these grants are made by hand.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tally_reader') THEN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user
                   AND (rolsuper OR rolcreaterole)) THEN
            CREATE ROLE tally_reader NOLOGIN;
        ELSE
            RAISE NOTICE 'tally_reader not created: % may not create roles', current_user;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tally_reader') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO tally_reader', current_schema());
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO tally_reader', current_schema());
        -- Not the seed before the draw, not the pseudonym key ever, not the user ids.
        REVOKE SELECT ON lottery_draws FROM tally_reader;
        GRANT SELECT (tournament, algorithm, commitment, committed_at, drawn_at, digest,
                      capacity, weights, rules, public_registrants, public_winners,
                      public_waitlist, statuses_published_at)
            ON lottery_draws TO tally_reader;
        REVOKE SELECT ON api_keys FROM tally_reader;
    END IF;
END
$$;
