"""`python -m tests.stateful.lease_claimer DSN SECONDS LEASE HOLDER...`: claims the delivery leases of every row of
subscription_deliveries for SECONDS, as each HOLDER (all concurrently, on one pool), as a replica's rounds do
but much faster, and prints one JSON line per lease obtained: [holder, uid, since, until] (the database's clock)."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from userservice.store import deliveries
from userservice.store.db import create_pool


async def claim_as(
    pool: object, holder: str, uids: list[str], seconds: float, lease: float
) -> list[list[str]]:
    got: list[list[str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        held = await deliveries.claim(pool, holder, uids, lease)  # type: ignore[arg-type]
        got += [[holder, uid, since.isoformat(), until.isoformat()] for uid, (since, until) in held.items()]
        # Renew late now and then, so leases lapse and change hands.
        await asyncio.sleep(random.uniform(0, lease * 1.5))
    return got


async def main(dsn: str, seconds: float, lease: float, holders: list[str]) -> None:
    pool = await create_pool(dsn, len(holders), 10)
    try:
        uids = [r["uid"] for r in await pool.fetch("SELECT uid FROM subscription_deliveries")]
        results = await asyncio.gather(*(claim_as(pool, h, uids, seconds, lease) for h in holders))
    finally:
        await pool.close()
    for lines in results:
        for line in lines:
            print(json.dumps(line))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]))
