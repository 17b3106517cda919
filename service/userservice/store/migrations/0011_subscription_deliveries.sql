-- Push delivery of change events to UserEventSubscriptions: one row per subscription (by its Kubernetes uid, so a
-- subscription deleted and made again under the same name starts afresh). The cursor is the last event the sink
-- acknowledged (or skipped as a type it does not want); it moves in the same statement as the counters. The lease
-- names the one process delivering the subscription: its holder renews it, another process takes it once it
-- lapses. Counters are kept here, not in the process, so they survive restarts and move with the lease.
CREATE TABLE subscription_deliveries (
    uid                 text        PRIMARY KEY,
    namespace           text        NOT NULL,
    user_service        text        NOT NULL,
    name                text        NOT NULL,
    types               text[],     -- the event types the sink wants; NULL: all (retention counts only these)
    generation          bigint      NOT NULL DEFAULT 0,  -- the subscription's metadata.generation, kept current
    cursor_tx           xid8        NOT NULL,
    cursor_seq          bigint      NOT NULL,
    holder              text,
    lease_until         timestamptz NOT NULL DEFAULT '-infinity',
    delivered           bigint      NOT NULL DEFAULT 0,
    failed              bigint      NOT NULL DEFAULT 0,
    expired             bigint      NOT NULL DEFAULT 0,  -- events pruned before they were delivered
    expired_generation  bigint,     -- the generation when that last happened: reported until the spec changes
    last_delivered_at   timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscription_deliveries_owner ON subscription_deliveries (namespace, user_service);
