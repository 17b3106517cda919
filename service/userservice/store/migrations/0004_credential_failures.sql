-- Failed password checks, shared by every replica. One row per throttled subject: scope 'account' (a user id,
-- or a digest of a login no user has, so unknown logins lock exactly like known ones) or 'caller' (the peer).
-- Counted by one atomic upsert per failure; a success deletes the account's row.
CREATE TABLE credential_failures (
    scope        text        NOT NULL CHECK (scope IN ('account', 'caller')),
    subject      text        NOT NULL,
    failures     integer     NOT NULL,
    last_failure timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    PRIMARY KEY (scope, subject)
);
-- Rows whose last failure is older than the counting window are pruned.
CREATE INDEX credential_failures_last_failure ON credential_failures (last_failure);
