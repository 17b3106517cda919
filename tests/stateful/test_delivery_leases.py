"""The delivery lease under concurrency, across two OS processes on one PostgreSQL: holders claiming the same
subscriptions as fast as they can, renewing late now and then so leases lapse and change hands, never hold one
subscription at overlapping times (each lease's interval is read off the database's clock)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime

import asyncpg
import pytest

from userservice.domain.events import Cursor
from userservice.store import deliveries

SUBSCRIPTIONS = [f"uid-{n}" for n in range(3)]


@pytest.mark.parametrize("lease", [0.05, 0.2])
async def test_no_two_holders_ever_hold_one_subscription_at_once(
    pool: asyncpg.Pool, database: str, lease: float
) -> None:
    await pool.execute("DELETE FROM subscription_deliveries")
    for uid in SUBSCRIPTIONS:
        await deliveries.ensure(pool, uid, "ns", "users", uid, None, 1, Cursor(1, 0))
    runs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "tests.stateful.lease_claimer", database, "3", str(lease), *holders),
            stdout=asyncio.subprocess.PIPE,
        )
        for holders in (["a1", "a2", "a3"], ["b1", "b2", "b3"])
    ]
    outputs = await asyncio.gather(*(asyncio.wait_for(run.communicate(), 120) for run in runs))
    assert [run.returncode for run in runs] == [0, 0]
    leases = [json.loads(line) for out, _ in outputs for line in out.decode().splitlines()]
    for uid in SUBSCRIPTIONS:
        spans = sorted(
            (datetime.fromisoformat(since), datetime.fromisoformat(until), holder)
            for holder, lease_uid, since, until in leases
            if lease_uid == uid
        )
        assert len({holder for *_, holder in spans}) >= 2, (
            f"{uid} never changed hands: the test proved nothing"
        )
        held_until: dict[str, datetime] = {}  # each holder's latest expiry so far
        for since, until, holder in spans:
            for other, other_until in held_until.items():
                if other != holder:
                    assert since > other_until, (
                        f"{uid}: {holder} took it at {since}; {other} held it to {other_until}"
                    )
            held_until[holder] = max(until, held_until.get(holder, until))
