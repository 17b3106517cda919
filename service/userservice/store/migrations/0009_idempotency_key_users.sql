-- Every user a stored response holds, a single create's one or each of a batch's, so that erasing or purging a user
-- forgets every idempotency key whose response carries its data (a batch's response holds a list of users, which
-- the expression index on response ->> 'id' never saw).
ALTER TABLE idempotency_keys ADD COLUMN user_ids uuid[] NOT NULL DEFAULT '{}';
UPDATE idempotency_keys SET user_ids = ARRAY(
    SELECT (u ->> 'id')::uuid FROM jsonb_array_elements(response -> 'users') AS u
) WHERE jsonb_typeof(response -> 'users') = 'array';
UPDATE idempotency_keys SET user_ids = ARRAY[(response ->> 'id')::uuid] WHERE response ? 'id';
DROP INDEX idempotency_keys_user_id;
CREATE INDEX idempotency_keys_user_ids ON idempotency_keys USING gin (user_ids);
