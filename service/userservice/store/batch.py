"""SQL for batch creates."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from userservice.domain.model import NewUser, User
from userservice.store.users import COLUMNS, NEW_COLUMNS, already_exists, new_row, row_user


async def taken(
    conn: asyncpg.Connection, nicknames: list[str], emails: list[str]
) -> tuple[set[str], set[str]]:
    """Which of these nicknames, and which of these emails, a user already has (both lower-cased: each is unique
    case-insensitively)."""
    rows = await conn.fetch(
        """SELECT lower(nickname) AS nickname, lower(email) AS email FROM users
           WHERE (lower(nickname) COLLATE "C" = ANY($1) OR lower(email) = ANY($2)) AND delete_time IS NULL""",
        [nickname.lower() for nickname in nicknames],
        [email.lower() for email in emails],
    )
    return {r["nickname"] for r in rows}, {r["email"] for r in rows}


async def insert(conn: asyncpg.Connection, rows: list[tuple[UUID, NewUser, str | None]]) -> list[User]:
    """Writes every (id, user, password hash) with one binary COPY, then reads them back with one SELECT (COPY
    returns no rows); the users come back in the order given. A unique index that refuses a row (a user created
    meanwhile) fails the whole COPY: AlreadyExists, and the caller's transaction leaves nothing behind."""
    try:
        await conn.copy_records_to_table(
            "users",
            records=[new_row(user_id, new, password_hash) for user_id, new, password_hash in rows],
            columns=NEW_COLUMNS,
        )
    except asyncpg.UniqueViolationError as exc:
        raise already_exists(exc) from None
    records = await conn.fetch(
        f"SELECT {COLUMNS} FROM users WHERE id = ANY($1::uuid[])", [user_id for user_id, _, _ in rows]
    )
    by_id = {record["id"]: row_user(record) for record in records}
    return [by_id[user_id] for user_id, _, _ in rows]


async def live(conn: asyncpg.Connection, user_ids: list[UUID]) -> set[UUID]:
    """Which of these users exist and are not deleted."""
    rows = await conn.fetch(
        "SELECT id FROM users WHERE id = ANY($1::uuid[]) AND delete_time IS NULL", user_ids
    )
    return {row["id"] for row in rows}
