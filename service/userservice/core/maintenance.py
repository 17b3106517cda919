"""Periodic pruning of expired change events, idempotency keys and password-failure counts, and purging of
deleted users due for it.

Every replica runs the loop; a transaction-level advisory lock lets only one of them prune per round.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from userservice.domain import events
from userservice.store import idempotency, lifecycle, outbox, throttle

log = logging.getLogger(__name__)

LOCK_ID = 0x75736572_73766302
PURGE_BATCH = 1000  # users purged per transaction: a backlog is worked off over rounds, in short transactions


async def prune_once(
    pool: asyncpg.Pool, event_retention: float, failure_window: float
) -> tuple[int, int, int] | None:
    """Prunes once; None when another replica holds the lock."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK_ID):
            return None
        return (
            await outbox.prune(conn, event_retention),
            await idempotency.delete_expired(conn),
            await throttle.prune(conn, failure_window),
        )


async def purge_once(pool: asyncpg.Pool, limit: int = PURGE_BATCH) -> int | None:
    """Purges deleted users past their purge_time, each with a purged event carrying no personal data;
    None when another replica holds the lock."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK_ID):
            return None
        purged = await lifecycle.purge_due(conn, limit)
        for user_id in purged:
            await outbox.append(conn, events.PURGED, user_id, {})  # the service's own work: no caller
        return len(purged)


async def run(pool: asyncpg.Pool, event_retention: float, interval: float, failure_window: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            pruned = await prune_once(pool, event_retention, failure_window)
            purged = await purge_once(pool)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("pruning failed; will retry", extra={"error": str(exc)})
            continue
        if pruned and any(pruned):
            log.info(
                "pruned expired rows",
                extra={"events": pruned[0], "idempotency_keys": pruned[1], "failure_counts": pruned[2]},
            )
        if purged:
            log.info("purged deleted users", extra={"users": purged})
