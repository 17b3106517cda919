"""SQL for the outbox: append in the writer's transaction, read in commit order, prune by age."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from userservice.domain.events import Cursor, StoredEvent

CHANNEL = "userservice_events"


async def append(conn: asyncpg.Connection, event_type: str, subject: UUID, data: dict[str, Any]) -> None:
    """Appends an event; the NOTIFY is delivered at commit, and not at all on rollback."""
    await conn.execute(
        """WITH appended AS (INSERT INTO user_events (type, subject, data) VALUES ($1, $2, $3) RETURNING 1)
           SELECT pg_notify($4, '') FROM appended""",
        event_type,
        subject,
        data,
        CHANNEL,
    )


async def read_after(
    conn: asyncpg.Connection | asyncpg.Pool, cursor: Cursor, limit: int
) -> list[StoredEvent]:
    """Events after `cursor` whose transactions are older than every running one (so none can slip in
    behind the cursor later), in commit order. The ORDER BY names the table's column: a bare `tx` would be
    the text output column, and '1000' sorts before '997'."""
    rows = await conn.fetch(
        """SELECT tx::text AS tx, seq, id, type, subject, time, data FROM user_events
           WHERE (tx, seq) > ($1::text::xid8, $2::bigint)
             AND tx < pg_snapshot_xmin(pg_current_snapshot())
           ORDER BY user_events.tx, seq LIMIT $3""",
        str(cursor.tx),
        cursor.seq,
        limit,
    )
    return [
        StoredEvent(Cursor(int(r["tx"]), r["seq"]), r["id"], r["type"], r["subject"], r["time"], r["data"])
        for r in rows
    ]


async def head(conn: asyncpg.Connection | asyncpg.Pool) -> Cursor:
    """A cursor at the current end of the stream: only events committed from now on lie after it."""
    xmin = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
    return Cursor(int(xmin), 0)


async def prune(conn: asyncpg.Connection, retention_seconds: float) -> int:
    status: str = await conn.execute(
        "DELETE FROM user_events WHERE time < now() - make_interval(secs => $1)", retention_seconds
    )
    return int(status.rsplit(" ", 1)[-1])
