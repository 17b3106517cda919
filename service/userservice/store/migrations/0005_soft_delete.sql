-- Soft delete (AIP-164): a deleted user keeps its row until purge_time, restorable until then.
ALTER TABLE users ADD COLUMN delete_time timestamptz, ADD COLUMN purge_time timestamptz;

-- A deleted user keeps no claim on its nickname or email: others may take them, and undeleting it then conflicts.
-- The indexes keep their names, which the store maps to the field that is taken.
DROP INDEX users_nickname_key;
DROP INDEX users_email_key;
CREATE UNIQUE INDEX users_nickname_key ON users (nickname) WHERE delete_time IS NULL;
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE delete_time IS NULL;

-- Maintenance finds the users due for purging without reading the others.
CREATE INDEX users_purge_time ON users (purge_time) WHERE purge_time IS NOT NULL;

-- Purging and erasure remove the idempotency keys whose stored response is the user's.
CREATE INDEX idempotency_keys_user_id ON idempotency_keys ((response ->> 'id'));
