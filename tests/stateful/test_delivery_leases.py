"""The delivery lease under concurrency, across two OS processes on one PostgreSQL: holders claiming the same
subscriptions as fast as they can, renewing late now and then so leases lapse and change hands, never hold one
subscription at overlapping times (each lease's interval is read off the database's clock). And the cursor writes
of many workers at once, grouped into few statements, each counted once and none for a lease held elsewhere."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime

import asyncpg
import pytest

from userservice.core.delivery import _CursorWrites
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


class _CountingPool:
    """The real pool, counting the statements sent through it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool, self.statements = pool, 0

    async def fetch(self, *args: object) -> list[asyncpg.Record]:
        self.statements += 1
        return await self.pool.fetch(*args)


async def test_concurrent_cursor_writes_are_grouped_counted_once_and_only_under_the_lease(
    pool: asyncpg.Pool,
) -> None:
    workers, writes = 40, 25
    uids = [f"grouped-{n}" for n in range(workers)]
    await pool.execute("DELETE FROM subscription_deliveries")
    for uid in uids:
        await deliveries.ensure(pool, uid, "ns", "users", uid, None, 1, Cursor(1, 0))
    held = await deliveries.claim(pool, "here", uids[1:], 60)
    assert set(held) == set(uids[1:])
    assert await deliveries.claim(pool, "elsewhere", uids[:1], 60)
    counting = _CountingPool(pool)
    cursors = _CursorWrites(counting, "here")  # type: ignore[arg-type]

    async def worker(uid: str) -> list[bool]:
        answers = []
        for n in range(1, writes + 1):
            answers.append(await cursors.advance(uid, Cursor(2, n), n % 3))
            await asyncio.sleep(0)
        return answers

    answers = await asyncio.gather(*(worker(uid) for uid in uids))
    assert answers[0] == [False] * writes  # the lease is another holder's: nothing written
    assert all(a == [True] * writes for a in answers[1:])
    rows = {
        r["uid"]: r
        for r in await pool.fetch(
            "SELECT uid, cursor_tx::text, cursor_seq, delivered FROM subscription_deliveries WHERE uid = ANY($1)",
            uids,
        )
    }
    assert (rows[uids[0]]["cursor_seq"], rows[uids[0]]["delivered"]) == (0, 0)
    for uid in uids[1:]:
        assert (rows[uid]["cursor_tx"], rows[uid]["cursor_seq"]) == ("2", writes)
        assert rows[uid]["delivered"] == sum(n % 3 for n in range(1, writes + 1))
    # 1,000 writes: the workers that waited together went out together.
    assert counting.statements < workers * writes / 4, counting.statements
