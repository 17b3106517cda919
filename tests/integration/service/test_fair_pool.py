"""FairPool's contract (real PostgreSQL): one connection per holder, waiters served in arrival order. What it
changes under overload, the tail latency, is a figure of `make bench` (docs/performance.md), not a test."""

from __future__ import annotations

import asyncio

from userservice.store.db import FairPool, create_pool


async def test_waiters_get_connections_in_arrival_order(database: str) -> None:
    pool = await create_pool(database, max_size=1, command_timeout=10)
    fair = FairPool(pool)
    served: list[str] = []

    async def request(name: str) -> None:
        async with fair.acquire() as conn:
            served.append(name)
            await conn.fetchval("SELECT 1")

    try:
        async with fair.acquire():
            waiters = []
            for i in range(4):
                waiters.append(asyncio.create_task(request(f"waiter-{i}")))
                await asyncio.sleep(0.01)  # each one is queued before the next arrives
        # The holder asks again at once, the moment it releases: it must queue behind the four.
        await request("again")
        await asyncio.gather(*waiters)
    finally:
        await pool.close()
    assert served == ["waiter-0", "waiter-1", "waiter-2", "waiter-3", "again"]
