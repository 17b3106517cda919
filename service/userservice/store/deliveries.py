"""SQL for push delivery: one row per UserEventSubscription with its cursor, lease and counters.

A process delivers a subscription only while it holds the row's lease, and every write to the row names the
holder, so a process that lost its lease (it stalled past the expiry and another took over) cannot move the
cursor any more. Every statement stands alone on a pooled connection: no session state, no session lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

from userservice.domain.events import Cursor

Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True)
class Row:
    cursor: Cursor
    delivered: int
    failed: int
    expired: int
    expired_generation: int | None
    last_delivered_at: datetime | None


async def ensure(
    db: Db,
    uid: str,
    namespace: str,
    user_service: str,
    name: str,
    types: list[str] | None,
    generation: int,
    start: Cursor,
) -> None:
    """Makes the row of a new subscription starting after `start`; an existing row keeps its cursor and gets
    the current types (retention counts only the events the sink wants) and generation."""
    await db.execute(
        """INSERT INTO subscription_deliveries
               (uid, namespace, user_service, name, types, generation, cursor_tx, cursor_seq)
           VALUES ($1, $2, $3, $4, $5, $6, $7::text::xid8, $8)
           ON CONFLICT (uid) DO UPDATE SET types = EXCLUDED.types, generation = EXCLUDED.generation
           WHERE (subscription_deliveries.types, subscription_deliveries.generation)
                 IS DISTINCT FROM (EXCLUDED.types, EXCLUDED.generation)""",
        uid,
        namespace,
        user_service,
        name,
        types,
        generation,
        str(start.tx),
        start.seq,
    )


async def known(db: Db, uids: list[str]) -> set[str]:
    rows = await db.fetch("SELECT uid FROM subscription_deliveries WHERE uid = ANY($1::text[])", uids)
    return {r["uid"] for r in rows}


async def claim(
    db: Db, holder: str, uids: list[str], lease_seconds: float
) -> dict[str, tuple[datetime, datetime]]:
    """Renews the leases `holder` holds among `uids` and takes the lapsed ones. Returns every uid it now holds
    with the lease's interval on the database's clock: from the statement's time to the new expiry. A takeover
    needs the expiry to lie before the statement's time, so no two holders' intervals of one uid overlap."""
    rows = await db.fetch(
        """UPDATE subscription_deliveries SET holder = $1, lease_until = now() + make_interval(secs => $3)
           WHERE uid = ANY($2::text[]) AND (holder = $1 OR lease_until < now())
           RETURNING uid, now() AS since, lease_until""",
        holder,
        uids,
        lease_seconds,
    )
    return {r["uid"]: (r["since"], r["lease_until"]) for r in rows}


async def release(db: Db, holder: str) -> None:
    """Lets every lease of `holder` lapse at once (a clean shutdown: another replica takes over at its next
    claim instead of after the expiry)."""
    await db.execute("UPDATE subscription_deliveries SET lease_until = '-infinity' WHERE holder = $1", holder)


async def load(db: Db, uid: str) -> Row | None:
    row = await db.fetchrow(
        """SELECT cursor_tx::text AS tx, cursor_seq, delivered, failed, expired, expired_generation,
                  last_delivered_at
           FROM subscription_deliveries WHERE uid = $1""",
        uid,
    )
    if row is None:
        return None
    return Row(
        Cursor(int(row["tx"]), row["cursor_seq"]),
        row["delivered"],
        row["failed"],
        row["expired"],
        row["expired_generation"],
        row["last_delivered_at"],
    )


async def advance(db: Db, holder: str, moves: list[tuple[str, Cursor, int]]) -> set[str]:
    """Moves each (uid, cursor, delivered) subscription's cursor past events its sink acknowledged (`delivered` of
    them) or does not want, in one statement; the uids whose lease `holder` still holds (nothing is written for
    the others). A uid appears at most once."""
    rows = await db.fetch(
        """UPDATE subscription_deliveries AS d
           SET cursor_tx = m.tx::xid8, cursor_seq = m.seq, delivered = d.delivered + m.delivered,
               last_delivered_at = CASE WHEN m.delivered > 0 THEN now() ELSE d.last_delivered_at END
           FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS m(uid, tx, seq, delivered)
           WHERE d.uid = m.uid AND d.holder = $1
           RETURNING d.uid""",
        holder,
        [uid for uid, _, _ in moves],
        [str(cursor.tx) for _, cursor, _ in moves],
        [cursor.seq for _, cursor, _ in moves],
        [delivered for _, _, delivered in moves],
    )
    return {row["uid"] for row in rows}


async def failed(db: Db, uid: str, holder: str) -> bool:
    """Counts one failed attempt; False when `holder` no longer holds the lease."""
    done = await db.fetchval(
        "UPDATE subscription_deliveries SET failed = failed + 1 WHERE uid = $1 AND holder = $2 RETURNING 1",
        uid,
        holder,
    )
    return done is not None


async def skip_expired(db: Db, uid: str, holder: str, pruned: Cursor) -> bool:
    """Moves a cursor that retention overtook to the newest pruned event (every later one is kept); the
    events lost were counted when they were pruned."""
    done = await db.fetchval(
        """UPDATE subscription_deliveries SET cursor_tx = $3::text::xid8, cursor_seq = $4
           WHERE uid = $1 AND holder = $2 AND (cursor_tx, cursor_seq) < ($3::text::xid8, $4) RETURNING 1""",
        uid,
        holder,
        str(pruned.tx),
        pruned.seq,
    )
    return done is not None


async def forget_except(db: Db, namespace: str, user_service: str, keep: list[str]) -> int:
    """Deletes the rows of this instance's subscriptions that no longer exist."""
    result: str = await db.execute(
        """DELETE FROM subscription_deliveries
           WHERE namespace = $1 AND user_service = $2 AND NOT (uid = ANY($3::text[]))""",
        namespace,
        user_service,
        keep,
    )
    return int(result.split()[-1])


async def lag(db: Db, cursor: Cursor, before: int, types: list[str] | None, cap: int) -> tuple[int, float]:
    """(events, seconds) a cursor is behind the horizon `before`: the wanted events after it (counted up to
    `cap`) and the age of the oldest one."""
    row = await db.fetchrow(
        """WITH behind AS (
               SELECT time FROM user_events
               WHERE (tx, seq) > ($1::text::xid8, $2::bigint) AND tx < $3::text::xid8
                 AND ($4::text[] IS NULL OR type = ANY($4::text[]))
               ORDER BY user_events.tx, seq LIMIT $5)
           SELECT count(*) AS events,
                  coalesce(extract(epoch FROM clock_timestamp() - min(time)), 0)::float8 AS seconds
           FROM behind""",
        str(cursor.tx),
        cursor.seq,
        str(before),
        types,
        cap,
    )
    assert row is not None
    return int(row["events"]), max(0.0, float(row["seconds"]))


async def count_expiring(conn: asyncpg.Connection, below: str) -> None:
    """In the pruning transaction, before events below the horizon `below` are deleted: adds to each
    subscription the wanted events it has not been given that are about to go, and marks its generation as
    having lost events (whether or not its deliverer ever reads past the gap)."""
    await conn.execute(
        """UPDATE subscription_deliveries d SET expired = d.expired + lost.n, expired_generation = d.generation
           FROM (SELECT d2.uid, count(e.*) AS n FROM subscription_deliveries d2
                 JOIN user_events e ON e.tx < $1::text::xid8
                   AND (e.tx, e.seq) > (d2.cursor_tx, d2.cursor_seq)
                   AND (d2.types IS NULL OR e.type = ANY(d2.types))
                 WHERE d2.cursor_tx < $1::text::xid8
                 GROUP BY d2.uid) AS lost
           WHERE d.uid = lost.uid""",
        below,
    )
