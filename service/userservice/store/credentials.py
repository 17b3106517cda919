"""SQL for password hashes: the only place a user's hash is read. Only live users are found: a soft-deleted user
holds no claim on its login (another may have taken it) and never authenticates."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from userservice.domain.login import Login
from userservice.domain.model import User

_COLUMNS = ", ".join(User._fields)


async def _find(
    conn: asyncpg.Connection | asyncpg.Pool, where: str, value: object, lock: str = ""
) -> tuple[User, str | None] | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS}, password_hash FROM users WHERE {where} AND delete_time IS NULL {lock}", value
    )
    if row is None:
        return None
    return User._make(tuple(row)[: len(User._fields)]), row["password_hash"]


async def find_by_login(
    conn: asyncpg.Connection | asyncpg.Pool, login: Login
) -> tuple[User, str | None] | None:
    """The user a login names and their password hash."""
    if login.email is not None:
        return await _find(conn, "lower(email) = lower($1)", login.email)
    if login.nickname is not None:
        return await _find(conn, "nickname = $1", login.nickname)
    return None


async def find_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: UUID, *, for_update: bool = False
) -> tuple[User, str | None] | None:
    """The user and its hash; with `for_update`, its row lock held until the transaction ends."""
    return await _find(conn, "id = $1", user_id, "FOR UPDATE" if for_update else "")


async def rehash(conn: asyncpg.Connection | asyncpg.Pool, user_id: UUID, old: str, new: str) -> bool:
    """Replaces an outdated hash of the same password (not a change: no new version, no event); does
    nothing when the password changed meanwhile."""
    status = await conn.execute(
        "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2", user_id, old, new
    )
    return bool(status == "UPDATE 1")
