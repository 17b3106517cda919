"""SQL for a user's lifecycle: soft delete, undelete, purge and erasure. Every function takes a connection so callers
decide the transaction."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from userservice.domain.events import TOMBSTONE
from userservice.domain.model import User
from userservice.store.users import COLUMNS, already_exists, row_user


async def soft_delete(conn: asyncpg.Connection, user_id: UUID, retention_seconds: float) -> User:
    row = await conn.fetchrow(
        f"""UPDATE users SET delete_time = now(), purge_time = now() + make_interval(secs => $2),
                   version = version + 1, updated_at = now()
            WHERE id = $1 RETURNING {COLUMNS}""",
        user_id,
        retention_seconds,
    )
    return row_user(row)


async def get_any(conn: asyncpg.Connection | asyncpg.Pool, user_id: UUID) -> User | None:
    """The user, deleted or not."""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM users WHERE id = $1", user_id)
    return None if row is None else row_user(row)


async def undelete(conn: asyncpg.Connection, user_id: UUID) -> User:
    """Restores a soft-deleted user; AlreadyExists when its nickname or email was taken meanwhile."""
    try:
        row = await conn.fetchrow(
            f"""UPDATE users SET delete_time = NULL, purge_time = NULL, version = version + 1, updated_at = now()
                WHERE id = $1 RETURNING {COLUMNS}""",
            user_id,
        )
    except asyncpg.UniqueViolationError as exc:
        raise already_exists(exc) from None
    return row_user(row)


async def forget_idempotency_keys(conn: asyncpg.Connection, user_ids: list[UUID]) -> int:
    """Deletes the idempotency keys whose stored response holds one of these users (a create's, or any user of a
    batch's: it holds their data, and its fingerprint is derived from it). A retry with such a key is then a new
    request."""
    status: str = await conn.execute("DELETE FROM idempotency_keys WHERE user_ids && $1::uuid[]", user_ids)
    return int(status.rsplit(" ", 1)[-1])


async def purge_due(conn: asyncpg.Connection, limit: int) -> list[UUID]:
    """Removes up to `limit` soft-deleted users whose purge_time has passed; returns their ids."""
    rows = await conn.fetch(
        """DELETE FROM users WHERE id IN (
               SELECT id FROM users WHERE purge_time <= now() ORDER BY purge_time LIMIT $1 FOR UPDATE SKIP LOCKED
           ) RETURNING id""",
        limit,
    )
    ids = [row["id"] for row in rows]
    if ids:
        await forget_idempotency_keys(conn, ids)
    return ids


async def erase(conn: asyncpg.Connection, user_id: UUID) -> bool:
    """Removes every copy of the user's personal data: its row (deleted or not), the data of its events (now
    tombstones) and the idempotency keys holding its data and hash. False when there was nothing left to erase.

    Every writer of a user's events holds its row lock, which the DELETE waits for: the events are scrubbed by a
    later statement, whose snapshot sees every event of this user committed before."""
    removed = await conn.fetchval("DELETE FROM users WHERE id = $1 RETURNING true", user_id)
    status: str = await conn.execute(
        """UPDATE user_events SET data = $2
           WHERE subject = $1 AND data <> '{}'::jsonb AND data <> $2""",
        user_id,
        TOMBSTONE,
    )
    scrubbed = int(status.rsplit(" ", 1)[-1])
    forgotten = await forget_idempotency_keys(conn, [user_id])
    return bool(removed or scrubbed or forgotten)
