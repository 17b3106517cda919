-- Event retention by visibility, not by age. An event's `time` is its transaction's start, which can be far older
-- than its commit: pruning by `time` could delete an event before any watcher could read it. Instead each pruning
-- round records the feed's visibility horizon; events are deleted once a horizon recorded at least the retention
-- period ago had passed them, i.e. after every reader could see them for that long.
CREATE TABLE user_events_horizons (
    observed_at timestamptz NOT NULL DEFAULT now(),
    tx          xid8        NOT NULL
);
CREATE INDEX user_events_horizons_observed_at ON user_events_horizons (observed_at);

-- The newest event pruned so far. Resuming from an older cursor would silently skip events, so it is refused
-- (410 / OUT_OF_RANGE); resuming after this one loses nothing that is still kept.
CREATE TABLE user_events_pruned (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    tx        xid8    NOT NULL,
    seq       bigint  NOT NULL
);
INSERT INTO user_events_pruned (tx, seq) VALUES ('0', 0);

-- Pruning no longer looks at `time`.
DROP INDEX user_events_time;
