-- Provisioning (SCIM 2.0) on the same users: an account can be deactivated, carries the identity provider's
-- correlation key and the name it displays, and may have been created without a password or a country (an IdP
-- supplies neither).
ALTER TABLE users
    ADD COLUMN active boolean NOT NULL DEFAULT true,
    ADD COLUMN external_id text,
    ADD COLUMN display_name text,
    ALTER COLUMN password_hash DROP NOT NULL,
    ALTER COLUMN country DROP NOT NULL;

-- The IdP's key names one live user (SCIM externalId is case-exact, so the index is on the column itself).
CREATE UNIQUE INDEX users_external_id_key ON users (external_id COLLATE "C")
    WHERE delete_time IS NULL AND external_id IS NOT NULL;

-- SCIM's userName is the nickname, and userName is case-insensitive (RFC 7643 caseExact=false): two live users may
-- no longer hold nicknames that differ only in case. The binary-ordered lower() also serves SCIM's userName filters.
DO $$
DECLARE
    clashes bigint;
BEGIN
    SELECT count(*) INTO clashes FROM (
        SELECT 1 FROM users WHERE delete_time IS NULL GROUP BY lower(nickname) HAVING count(*) > 1
    ) AS clash;
    IF clashes > 0 THEN
        RAISE EXCEPTION '% nicknames are held by live users that differ only in case; rename or delete one of each '
            'before this migration (find them with: SELECT lower(nickname), array_agg(id) FROM users '
            'WHERE delete_time IS NULL GROUP BY 1 HAVING count(*) > 1)', clashes;
    END IF;
END
$$;
CREATE UNIQUE INDEX users_nickname_folded_key ON users ((lower(nickname) COLLATE "C")) WHERE delete_time IS NULL;

-- SCIM filters are answered from indexes only (store/search.py): givenName like the other names, lastModified,
-- and contains / ends-with (co, ew) through trigram indexes on the case-folded names and addresses.
CREATE INDEX users_first_name_search ON users ((lower(first_name) COLLATE "C"));
CREATE INDEX users_updated_at ON users (updated_at);
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_nickname_trigrams ON users USING gin (lower(nickname) gin_trgm_ops);
CREATE INDEX users_email_trigrams ON users USING gin (lower(email) gin_trgm_ops);
CREATE INDEX users_first_name_trigrams ON users USING gin (lower(first_name) gin_trgm_ops);
CREATE INDEX users_last_name_trigrams ON users USING gin (lower(last_name) gin_trgm_ops);
-- SCIM pages count and walk live users in (created_at, id) order; deactivated users are a filter of their own.
CREATE INDEX users_live_created_at_id ON users (created_at, id) WHERE delete_time IS NULL;
CREATE INDEX users_inactive ON users (created_at, id) WHERE NOT active AND delete_time IS NULL;
