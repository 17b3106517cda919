"""SQL for the outbox: append in the writer's transaction, read in commit order, prune by age."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from userservice.domain.events import Cursor, StoredEvent
from userservice.store import deliveries

CHANNEL = "userservice_events"


async def append(
    conn: asyncpg.Connection,
    event_type: str,
    subject: UUID,
    data: dict[str, Any],
    authtype: str | None = None,
    authid: str | None = None,
) -> None:
    """Appends an event made by (authtype, authid), both None for the service's own work; the NOTIFY is delivered
    at commit, and not at all on rollback."""
    await conn.execute(
        """WITH appended AS (
               INSERT INTO user_events (type, subject, data, authtype, authid) VALUES ($1, $2, $3, $5, $6)
               RETURNING 1)
           SELECT pg_notify($4, '') FROM appended""",
        event_type,
        subject,
        data,
        CHANNEL,
        authtype,
        authid,
    )


async def append_many(
    conn: asyncpg.Connection,
    event_type: str,
    events: list[tuple[UUID, dict[str, Any]]],
    authtype: str | None = None,
    authid: str | None = None,
) -> None:
    """Appends one event per (subject, data) with one binary COPY, in the order given (their cursors follow it:
    COPY takes each row's `seq` from the identity in turn), and one NOTIFY, delivered at commit."""
    await conn.copy_records_to_table(
        "user_events",
        records=[(event_type, subject, data, authtype, authid) for subject, data in events],
        columns=("type", "subject", "data", "authtype", "authid"),
    )
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)


@dataclass(frozen=True)
class Horizon:
    """Every event with `tx` below `tx` is committed or gone for good; `stall` is the age, in seconds, of
    the oldest transaction of this database holding the horizon back (0 when none does)."""

    tx: int
    stall: float


# The horizon is the statement's snapshot xmax, lowered to the oldest transaction the snapshot saw running,
# leaving out only transactions known to run in *another* database (writers of user_events live only here).
# pg_current_snapshot() is the statement's snapshot, taken before pg_stat_activity is read; a transaction is
# left out only when that later read places it elsewhere, so whatever the read misses still holds the horizon
# (a stall until the next poll at worst, never a skipped event). The events are read by a later statement,
# whose snapshot sees every transaction below the horizon as ended. Transaction ids only grow, so no row below
# the horizon can appear later. pg_stat_activity and pg_prepared_xacts give 32-bit xids: they are matched with
# the snapshot's full xid8 on the low 32 bits, which cannot be ambiguous among transactions running together.
_HORIZON = """
WITH snapshot AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
elsewhere AS (
    SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
    WHERE datname IS DISTINCT FROM current_database() AND backend_xid IS NOT NULL
    UNION ALL
    SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE database <> current_database()
),
held AS (
    SELECT running, (running::text::numeric % 4294967296)::bigint AS xid
    FROM snapshot, pg_snapshot_xip(s) AS running
    WHERE (running::text::numeric % 4294967296)::bigint NOT IN (SELECT xid FROM elsewhere)
),
since AS (
    SELECT xact_start AS t FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xid::text::bigint IN (SELECT xid FROM held)
    UNION ALL
    SELECT prepared FROM pg_prepared_xacts
    WHERE database = current_database() AND transaction::text::bigint IN (SELECT xid FROM held)
)
SELECT least(pg_snapshot_xmax(s), (SELECT min(running) FROM held))::text AS tx,
       coalesce(extract(epoch FROM clock_timestamp() - (SELECT min(t) FROM since)), 0)::float8 AS stall
FROM snapshot
"""


async def horizon(conn: asyncpg.Connection | asyncpg.Pool) -> Horizon:
    row = await conn.fetchrow(_HORIZON)
    assert row is not None
    return Horizon(int(row["tx"]), max(0.0, row["stall"]))


async def read_after(
    conn: asyncpg.Connection | asyncpg.Pool, cursor: Cursor, before: int, limit: int
) -> list[StoredEvent]:
    """Events after `cursor` of transactions below the horizon `before`, in commit order. Call it with a
    horizon computed by an earlier statement (its snapshot must not predate the horizon's). ORDER BY names
    the column, not the text alias `tx`: as text, '1000' sorts before '999'."""
    rows = await conn.fetch(
        """SELECT tx::text AS tx, seq, id, type, subject, time, data, authtype, authid FROM user_events
           WHERE (tx, seq) > ($1::text::xid8, $2::bigint) AND tx < $3::text::xid8
           ORDER BY user_events.tx, seq LIMIT $4""",
        str(cursor.tx),
        cursor.seq,
        str(before),
        limit,
    )
    return [_event(r) for r in rows]


def _event(r: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        Cursor(int(r["tx"]), r["seq"]),
        r["id"],
        r["type"],
        r["subject"],
        r["time"],
        r["data"],
        r["authtype"],
        r["authid"],
    )


async def read_between(
    conn: asyncpg.Connection | asyncpg.Pool, cursor: Cursor, last: Cursor, limit: int
) -> list[StoredEvent]:
    """Events after `cursor` up to and including `last`, a position the feed already read past (so every
    event up to it has committed or is gone for good), in commit order."""
    rows = await conn.fetch(
        """SELECT tx::text AS tx, seq, id, type, subject, time, data, authtype, authid FROM user_events
           WHERE (tx, seq) > ($1::text::xid8, $2::bigint) AND (tx, seq) <= ($3::text::xid8, $4::bigint)
           ORDER BY user_events.tx, seq LIMIT $5""",
        str(cursor.tx),
        cursor.seq,
        str(last.tx),
        last.seq,
        limit,
    )
    return [_event(r) for r in rows]


async def pruned_through(conn: asyncpg.Connection | asyncpg.Pool) -> Cursor:
    """The newest event deleted by retention: a cursor before it has lost events."""
    row = await conn.fetchrow("SELECT tx::text AS tx, seq FROM user_events_pruned")
    assert row is not None
    return Cursor(int(row["tx"]), row["seq"])


async def prune(conn: asyncpg.Connection, retention_seconds: float) -> int:
    """Records the current horizon, then deletes the events below the newest horizon recorded at least
    `retention_seconds` ago (visible to every reader for that long), remembering the newest one deleted. In the
    same transaction, each push subscription counts the events it loses (never silently)."""
    now = await horizon(conn)
    await conn.execute("INSERT INTO user_events_horizons (tx) VALUES ($1::text::xid8)", str(now.tx))
    cutoff = await conn.fetchrow(
        """SELECT tx::text AS tx, observed_at FROM user_events_horizons
           WHERE observed_at <= now() - make_interval(secs => $1) ORDER BY observed_at DESC LIMIT 1""",
        retention_seconds,
    )
    if cutoff is None:
        return 0
    await deliveries.count_expiring(conn, cutoff["tx"])
    deleted: int = await conn.fetchval(
        """WITH gone AS (DELETE FROM user_events WHERE tx < $1::text::xid8 RETURNING tx, seq),
                newest AS (SELECT tx, seq FROM gone ORDER BY tx DESC, seq DESC LIMIT 1),
                moved AS (UPDATE user_events_pruned p SET tx = newest.tx, seq = newest.seq FROM newest
                          WHERE (newest.tx, newest.seq) > (p.tx, p.seq))
           SELECT count(*) FROM gone""",
        cutoff["tx"],
    )
    await conn.execute("DELETE FROM user_events_horizons WHERE observed_at < $1", cutoff["observed_at"])
    return deleted


async def read_subject(conn: asyncpg.Connection | asyncpg.Pool, subject: UUID) -> list[StoredEvent]:
    """Every retained event about one user, in commit order (committed ones: a running transaction's are
    invisible here)."""
    rows = await conn.fetch(
        """SELECT tx::text AS tx, seq, id, type, subject, time, data, authtype, authid FROM user_events
           WHERE subject = $1 ORDER BY user_events.tx, seq""",
        subject,
    )
    return [_event(r) for r in rows]
