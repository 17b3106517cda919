"""SQL for batch creates."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from userservice.domain.model import NewUser, User
from userservice.store.users import COLUMNS, already_exists, row_user


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
    """Inserts every (id, user, password hash) in one statement, one round trip for the whole batch; the users
    come back in the order given."""
    try:
        records = await conn.fetch(
            f"""INSERT INTO users
                    (id, first_name, last_name, nickname, email, country, password_hash, active, external_id,
                     display_name)
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                     $7::text[], $8::bool[], $9::text[], $10::text[])
                RETURNING {COLUMNS}""",
            [user_id for user_id, _, _ in rows],
            [new.first_name for _, new, _ in rows],
            [new.last_name for _, new, _ in rows],
            [new.nickname for _, new, _ in rows],
            [new.email for _, new, _ in rows],
            [new.country for _, new, _ in rows],
            [password_hash for _, _, password_hash in rows],
            [new.active for _, new, _ in rows],
            [new.external_id for _, new, _ in rows],
            [new.display_name for _, new, _ in rows],
        )
    except asyncpg.UniqueViolationError as exc:
        raise already_exists(exc) from None
    by_id = {record["id"]: row_user(record) for record in records}
    return [by_id[user_id] for user_id, _, _ in rows]


async def live(conn: asyncpg.Connection, user_ids: list[UUID]) -> set[UUID]:
    """Which of these users exist and are not deleted."""
    rows = await conn.fetch(
        "SELECT id FROM users WHERE id = ANY($1::uuid[]) AND delete_time IS NULL", user_ids
    )
    return {row["id"] for row in rows}
