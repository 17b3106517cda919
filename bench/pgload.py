"""The database limit: the service's own SQL (its store and outbox functions) on a raw asyncpg pool of the
service's size, from `concurrency` concurrent workers, with no HTTP, validation or password hashing.

    python -m bench.pgload DSN OP CONCURRENCY SECONDS IDS_FILE POOL_SIZE RUN_TAG

Prints one JSON object: requests, errors, seconds, p50_ms, p99_ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from bench.stack import LIST_COUNTRY, SEARCH_EMAIL_PREFIX
from bench.stats import percentile
from userservice.domain import events
from userservice.domain.listing import ListFilter
from userservice.domain.model import NewUser
from userservice.store import outbox
from userservice.store import users as store
from userservice.store.db import create_pool

# A real argon2id hash: the row is the same size as the service's, only the hashing is left out.
HASH = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE"


async def main(
    dsn: str, op: str, concurrency: int, seconds: float, ids: list[str], pool_size: int, tag: str
) -> dict[str, Any]:
    pool = await create_pool(dsn, pool_size, 10)
    async with pool.acquire() as conn:  # open the pool's connections before the clock starts
        await conn.fetchval("SELECT 1")
    uids = [UUID(i) for i in ids]
    rng = random.Random()
    counter = iter(range(10**9))
    list_filter = ListFilter(country=LIST_COUNTRY)
    search_filter = ListFilter(email_prefix=SEARCH_EMAIL_PREFIX)
    latencies: list[float] = []
    errors = 0

    async def once() -> None:
        if op == "get":
            await store.get(pool, rng.choice(uids))
        elif op == "list":
            await store.page(pool, list_filter, None, 51)
        elif op == "search":
            await store.page(pool, search_filter, None, 51)
        elif op == "create":
            n = next(counter)
            new = NewUser("Ada", "Lovelace", f"p{tag}x{n}", f"p{tag}x{n}@example.com", "GB", "x" * 12)
            async with pool.acquire() as conn, conn.transaction():
                user = await store.insert(conn, uuid.uuid4(), new, HASH)
                await outbox.append(conn, events.CREATED, user.id, events.event_data(user.public()))
        elif op == "patch":
            uid = rng.choice(uids)
            async with pool.acquire() as conn, conn.transaction():
                current = await store.lock(conn, uid)
                assert current is not None
                updated = await store.update(conn, uid, {"first_name": f"P{next(counter)}"})
                await outbox.append(
                    conn, events.UPDATED, uid, events.event_data(updated.public(), ("first_name",))
                )
        else:
            raise ValueError(op)

    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                await once()
            except (asyncpg.PostgresError, AssertionError, OSError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


if __name__ == "__main__":
    dsn, op, conc, secs, ids_file, pool_size, tag = sys.argv[1:8]
    ids = Path(ids_file).read_text().split()
    result = asyncio.run(main(dsn, op, int(conc), float(secs), ids, int(pool_size), tag))
    print(json.dumps(result), flush=True)
