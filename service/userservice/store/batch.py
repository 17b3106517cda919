"""SQL for batch creates."""

from __future__ import annotations

import asyncpg


async def taken(
    conn: asyncpg.Connection, nicknames: list[str], emails: list[str]
) -> tuple[set[str], set[str]]:
    """Which of these nicknames, and which of these emails (lower-cased), a user already has."""
    rows = await conn.fetch(
        "SELECT nickname, lower(email) AS email FROM users WHERE nickname = ANY($1) OR lower(email) = ANY($2)",
        nicknames,
        [email.lower() for email in emails],
    )
    return {r["nickname"] for r in rows}, {r["email"] for r in rows}
