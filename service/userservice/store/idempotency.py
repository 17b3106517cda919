"""Idempotency keys, stored in PostgreSQL so they hold across replicas.

A create claims its key in the same transaction that inserts the user. A concurrent request with the same
key blocks on the claim until the first commits, then finds the key taken and replays the stored response;
if the first rolls back, the second proceeds as if it were first. Expired keys are claimable again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class StoredKey:
    fingerprint: str
    password_hash: str
    response: dict[str, Any]


async def claim(
    conn: asyncpg.Connection, key: str, fingerprint: str, password_hash: str, ttl_seconds: float
) -> bool:
    """True when this transaction now owns the key; False when an unexpired key exists."""
    claimed = await conn.fetchval(
        """INSERT INTO idempotency_keys (key, fingerprint, password_hash, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))
           ON CONFLICT (key) DO UPDATE
              SET fingerprint = excluded.fingerprint, password_hash = excluded.password_hash,
                  response = NULL, user_ids = '{}', expires_at = excluded.expires_at
              WHERE idempotency_keys.expires_at <= now()
           RETURNING true""",
        key,
        fingerprint,
        password_hash,
        ttl_seconds,
    )
    return bool(claimed)


async def record_response(
    conn: asyncpg.Connection, key: str, response: dict[str, Any], user_ids: list[UUID]
) -> None:
    """Stores the response to replay, with the users whose data it holds (erasure forgets the key by them)."""
    await conn.execute(
        "UPDATE idempotency_keys SET response = $2, user_ids = $3 WHERE key = $1", key, response, user_ids
    )


async def lookup(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> StoredKey | None:
    row = await conn.fetchrow(
        "SELECT fingerprint, password_hash, response FROM idempotency_keys "
        "WHERE key = $1 AND expires_at > now() AND response IS NOT NULL",
        key,
    )
    return None if row is None else StoredKey(row["fingerprint"], row["password_hash"], row["response"])


async def delete_expired(conn: asyncpg.Connection) -> int:
    status: str = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= now()")
    return int(status.rsplit(" ", 1)[-1])
