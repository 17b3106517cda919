"""Reads from streaming replicas that never show a client data older than its own writes.

Get, list and search take their connection from the ReadRouter; everything else uses the primary's pool. A read
that carries a consistency token (domain/consistency.py) is served by a replica only once that replica has
replayed WAL up to the token, checked on the very connection that then runs the query (a replica's replay
position only grows, so the query sees the write); the router waits up to READ_TOKEN_WAIT_SECONDS for that, then
sends the read to the primary. The check is per connection, not per DSN: one DSN may be a Service in front of
several replicas (CloudNativePG's `-ro`), each at its own position. A read without a token goes where
READS_WITHOUT_TOKEN says: the primary (what a client that ignores tokens saw before replicas), or any replica in
rotation.

The watcher measures each replica every REPLICA_PROBE_SECONDS. Lag in time is how long ago the primary first
wrote past the replica's replay position (from the primary's positions sampled at each probe): 0 when caught up,
also when nothing is written, which `now() - pg_last_xact_replay_timestamp()` would instead count as ever-growing
lag. A replica that is unreachable, not in recovery, or lagging past REPLICA_MAX_LAG_SECONDS leaves the rotation
and comes back at the first probe that finds it well. Readiness never depends on a replica: the primary serves
every read a replica cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from userservice.domain import consistency
from userservice.metrics import Metrics
from userservice.store.db import COMMIT_POSITION_SQL, UNAVAILABLE_ERRORS, FairPool

log = logging.getLogger(__name__)

# A replica's position; NULL on a server that is not in recovery (a primary, e.g. a promoted replica).
REPLAY_POSITION_SQL = "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn"
TOKEN_POLL_SECONDS = 0.005  # a read waiting for a replica to replay asks again this often
CONNECT_TIMEOUT_SECONDS = 2.0  # a replica that does not answer this fast is left for the primary
# Any failure to get a replica connection or to check it sends the read to the primary instead.
_REPLICA_FAILURES = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)


@dataclass
class ReplicaState:
    in_rotation: bool = False
    replayed: int | None = None
    lag_seconds: float = 0.0
    lag_bytes: int = 0


class Replica:
    """One replica DSN: its own pool, behind its own first-come, first-served gate. Known by its index in
    DATABASE_READ_URL (in logs and metrics; never the DSN, which may hold a password)."""

    def __init__(self, index: int, pool: asyncpg.Pool) -> None:
        self.name = str(index)
        self.pool = pool
        self.gate = FairPool(pool)
        self.state = ReplicaState()


def replay_lag(history: Sequence[tuple[float, int]], replayed: int, now: float) -> float:
    """Seconds since the primary first wrote past `replayed`, from (time, primary position) samples, oldest
    first; 0 when no sample is past it (caught up, or nothing written)."""
    for sampled_at, position in history:
        if position > replayed:
            return now - sampled_at
    return 0.0


class ReadRouter:
    def __init__(
        self,
        primary: FairPool,
        replicas: Sequence[Replica] = (),
        metrics: Metrics | None = None,
        *,
        token_wait: float = 0.0,
        untokened_to_replica: bool = False,
    ) -> None:
        self._primary = primary
        self.replicas = list(replicas)
        self._metrics = metrics
        self._token_wait = token_wait
        self._untokened_to_replica = untokened_to_replica
        self._turn = itertools.count()
        self._counters: dict[tuple[str, str], Any] = {}

    def _count(self, pool: str, reason: str) -> None:
        if self._metrics is not None:
            counter = self._counters.get((pool, reason))
            if counter is None:  # labels() takes a lock and builds a key: once per (pool, reason)
                counter = self._counters[(pool, reason)] = self._metrics.db_reads.labels(pool, reason)
            counter.inc()

    def _pick(self, wanted: int | None) -> Replica | None:
        """The next replica in rotation, round robin; for a token, one already known to be past it if any."""
        ready = [r for r in self.replicas if r.state.in_rotation]
        if wanted is not None:
            ready = [r for r in ready if (r.state.replayed or 0) >= wanted] or ready
        return ready[next(self._turn) % len(ready)] if ready else None

    async def _caught_up(self, replica: Replica, conn: asyncpg.Connection, wanted: int) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._token_wait
        while True:
            replayed = await conn.fetchval(REPLAY_POSITION_SQL)
            if replayed is not None and int(replayed) >= wanted:
                replica.state.replayed = max(replica.state.replayed or 0, int(replayed))
                return True
            if replayed is None or loop.time() >= deadline:
                return False
            await asyncio.sleep(TOKEN_POLL_SECONDS)

    def acquire(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        """A connection whose data is at least as new as the request's consistency token asks."""
        request = consistency.current()
        wanted = request.read_after if request is not None else None
        to_replica = wanted is not None or self._untokened_to_replica
        if to_replica and self.replicas:
            return self._from_replica(wanted)
        # The primary's lease itself, without a generator around it: every read of a service with no replica
        # (and every untokened read of one that keeps those on the primary) takes this path.
        self._count("primary", "no_replica" if to_replica else "no_token")
        return self._primary.acquire()

    @contextlib.asynccontextmanager
    async def _from_replica(self, wanted: int | None) -> AsyncIterator[asyncpg.Connection]:
        replica = self._pick(wanted)
        reason = "no_replica"
        if replica is not None:
            serving = False
            try:
                async with replica.gate.acquire() as conn:
                    if wanted is None or await self._caught_up(replica, conn, wanted):
                        serving = True
                        self._count(replica.name, "replica")
                        yield conn
                        return
                reason = "token_wait_expired"
            except _REPLICA_FAILURES:
                if serving:
                    raise
                replica.state.in_rotation = False  # the watcher brings it back once it answers again
                log.warning("replica unavailable, reading from the primary", extra={"replica": replica.name})
                reason = "replica_unavailable"
        self._count("primary", reason)
        async with self._primary.acquire() as conn:
            yield conn

    def _publish(self, replica: Replica) -> None:
        if self._metrics is None:
            return
        state = replica.state
        self._metrics.replica_in_rotation.labels(replica.name).set(1 if state.in_rotation else 0)
        self._metrics.replica_lag_seconds.labels(replica.name).set(state.lag_seconds)
        self._metrics.replica_lag_bytes.labels(replica.name).set(state.lag_bytes)

    async def _probe(
        self, replica: Replica, history: Sequence[tuple[float, int]], max_lag: float, limit: float
    ) -> None:
        state, was = replica.state, replica.state.in_rotation
        try:
            replayed = await asyncio.wait_for(replica.pool.fetchval(REPLAY_POSITION_SQL), limit)
        except _REPLICA_FAILURES:
            replayed, why = None, "unreachable"
        else:
            why = "not a replica (not in recovery)"
        if replayed is None:
            state.in_rotation = False
        else:
            now = asyncio.get_running_loop().time()
            state.replayed = int(replayed)
            state.lag_seconds = replay_lag(history, state.replayed, now)
            state.lag_bytes = max(0, history[-1][1] - state.replayed) if history else 0
            state.in_rotation = state.lag_seconds <= max_lag
            why = f"lagging {state.lag_seconds:.1f}s behind the primary"
        if was != state.in_rotation:
            extra = {"replica": replica.name}
            if state.in_rotation:
                log.info("replica back in rotation", extra=extra)
            else:
                log.warning(f"replica out of rotation: {why}", extra=extra)
        self._publish(replica)

    async def watch(self, primary: asyncpg.Pool, interval: float, max_lag: float) -> None:
        """Probes every replica each `interval` seconds, forever (a background task)."""
        history: deque[tuple[float, int]] = deque()
        loop = asyncio.get_running_loop()
        timeout = max(interval, CONNECT_TIMEOUT_SECONDS)
        while True:
            with contextlib.suppress(*UNAVAILABLE_ERRORS, asyncpg.PostgresError):
                position = await asyncio.wait_for(primary.fetchval(COMMIT_POSITION_SQL), timeout)
                history.append((loop.time(), int(position)))
            # Samples older than the bound are not needed: a replica behind all of them is out either way.
            while len(history) > 1 and history[1][0] < loop.time() - max_lag - 2 * interval:
                history.popleft()
            await asyncio.gather(*(self._probe(r, history, max_lag, timeout) for r in self.replicas))
            await asyncio.sleep(interval)

    async def close(self, grace: float) -> None:
        await asyncio.gather(*(asyncio.wait_for(r.pool.close(), grace) for r in self.replicas))
