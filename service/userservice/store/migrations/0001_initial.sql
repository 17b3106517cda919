-- Users, their change events (the outbox), idempotency keys and the service's own secrets.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    first_name    text        NOT NULL,
    last_name     text        NOT NULL,
    nickname      text        NOT NULL,
    email         text        NOT NULL,
    country       text        NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    version       bigint      NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX users_nickname_key ON users (nickname);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- Keyset pagination: every listing is ordered by (created_at, id).
CREATE INDEX users_created_at_id ON users (created_at, id);
CREATE INDEX users_country_created_at_id ON users (country, created_at, id);

-- The outbox. Written in the same transaction as the change it records. `tx` is the writing transaction:
-- readers only take rows of transactions older than every running one, so they see commit order.
CREATE TABLE user_events (
    tx      xid8        NOT NULL DEFAULT pg_current_xact_id(),
    seq     bigint      GENERATED ALWAYS AS IDENTITY,
    id      uuid        NOT NULL DEFAULT gen_random_uuid(),
    type    text        NOT NULL,
    subject uuid        NOT NULL,
    time    timestamptz NOT NULL DEFAULT now(),
    data    jsonb       NOT NULL,
    PRIMARY KEY (tx, seq)
);
CREATE INDEX user_events_time ON user_events (time);

CREATE TABLE idempotency_keys (
    key           text PRIMARY KEY,
    fingerprint   text        NOT NULL,
    password_hash text        NOT NULL,
    response      jsonb,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- Secrets every replica must share, made once by the database itself (e.g. the page-token signing key).
CREATE TABLE service_secrets (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
INSERT INTO service_secrets (name, value)
VALUES ('page_token', sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')));
