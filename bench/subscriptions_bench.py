"""Push delivery (UserEventSubscription) against the event stream it is the push form of, in the same run:

- latency: commits one at a time, each to one subscription's receiver and to one SSE watcher at once; commit to
  receiver against commit to watcher, the same commits (goal: p50 and p99 at most 1.5 times the watcher's);
- throughput: a burst of events committed in one transaction, delivered to 1 and to 50 subscriptions, against
  the same burst fanned out to 50 SSE watchers (deliveries, or events received, per second);
- the cost to the API path: REST GET p99 while 50 subscriptions deliver a steady trickle of commits, against GET
  with the same trickle and no subscription, interleaved rounds (goal: at most 1.2 times).

The service runs as `userservice serve` with a real kube-apiserver (its subscriptions and signing Secret); the
receiver, the watchers and the committer share one event loop in this process, so both paths are read alike.
The receiver checks no signature (the service still signs every POST): it measures delivery, not a receiver.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import aiohttp
import asyncpg
from aiohttp import web

from bench import http_load, rounds, stack
from bench.events_bench import _commit
from bench.service_bench import Plan, _log, _tag
from bench.stats import Run, percentile, ratio
from tests.support.kube import KubeCluster, running_cluster
from tests.support.postgres import create_database
from userservice.domain import events
from userservice.store import outbox
from userservice.store.db import create_pool
from userservice_operator.crd import (
    GROUP,
    SUBSCRIPTION_CRD_NAME,
    SUBSCRIPTION_PLURAL,
    VERSION,
    subscription_crd_text,
)

NAMESPACE = "bench"
INSTANCE = "users"
MANY = 50
TRICKLE_PER_SECOND = 20  # commits per second during the GET rounds: 1,000 deliveries per second to 50 sinks
T = TypeVar("T")


class _Loop:
    """An event loop on a thread of its own: the receiver, the watchers and the committer run there while wrk
    runs from the main thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-subscriptions", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 600) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class _Receiver:
    """Counts the POSTs answered 204, per path, and wakes whoever waits."""

    def __init__(self) -> None:
        self.count: dict[str, int] = defaultdict(int)
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            await request.read()
            self.count[request.path] += 1
            self.arrived.set()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def until(self, check: Callable[[], bool], within: float = 300) -> None:
        async with asyncio.timeout(within):
            while not check():
                self.arrived.clear()
                await self.arrived.wait()


class _Watchers:
    """`count` SSE streams of /v1/events, each counting the events it reads."""

    def __init__(self, base: str, count: int) -> None:
        self.base, self.n = base, count
        self.count = [0] * count
        self.arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._streams: list[aiohttp.ClientResponse] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> _Watchers:
        self._session = aiohttp.ClientSession(base_url=self.base, connector=aiohttp.TCPConnector(limit=0))
        for _ in range(self.n):
            resp = await self._session.get("/v1/events", timeout=aiohttp.ClientTimeout(total=None))
            self._streams.append(resp)
            if resp.status != 200 or await resp.content.readline() != b": connected\n":
                raise RuntimeError(f"event stream refused: {resp.status}")
        self._tasks = [asyncio.create_task(self._read(i, resp)) for i, resp in enumerate(self._streams)]
        return self

    async def _read(self, index: int, resp: aiohttp.ClientResponse) -> None:
        async for line in resp.content:
            if line.startswith(b"id: "):
                self.count[index] += 1
                self.arrived.set()

    async def until(self, check: Callable[[], bool], within: float = 300) -> None:
        async with asyncio.timeout(within):
            while not check():
                self.arrived.clear()
                await self.arrived.wait()

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for resp in self._streams:
            resp.close()
        assert self._session is not None
        await self._session.close()


def _subscription(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "userservice.io/v1alpha1",
        "kind": "UserEventSubscription",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "userService": INSTANCE,
            "sink": {"uri": url},
            "signingSecretRef": {"name": "hooks", "key": "key"},
            "delivery": {"minBackoffSeconds": 0.1, "maxBackoffSeconds": 1},
        },
    }


def _count(dsn: str, query: str, *args: object) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval(query, *args))
        finally:
            await conn.close()

    return asyncio.run(count())


def _subscribe(kube: KubeCluster, dsn: str, receiver_url: str, names: list[str]) -> None:
    docs = [_subscription(n, f"{receiver_url}/{n}") for n in names]
    kube.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    held = """SELECT count(*) FROM subscription_deliveries
              WHERE namespace = $1 AND name = ANY($2::text[]) AND holder IS NOT NULL AND lease_until > now()"""
    # Every one taken (its cursor placed and its lease held by the service) before anything is committed: read
    # from the database, where it happens, rather than from the status the service writes seconds later.
    deadline = time.monotonic() + 120
    while _count(dsn, held, NAMESPACE, names) < len(names):
        if time.monotonic() > deadline:
            raise RuntimeError(f"subscriptions not taken: {names}")
        time.sleep(0.1)


def _unsubscribe(kube: KubeCluster, dsn: str, names: list[str]) -> None:
    """Deletes every subscription of the namespace (only `names` are there) in one request: kubectl's own delete
    and get of many names go one object at a time under its client-side rate limit (8 s and 18 s for 50)."""
    collection = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{SUBSCRIPTION_PLURAL}"
    kube.kubectl("delete", "--raw", collection)

    def remaining() -> set[str]:
        items = json.loads(kube.kubectl("get", "--raw", collection).stdout)["items"]
        return {i["metadata"]["name"] for i in items} & set(names)

    deadline = time.monotonic() + 60
    while remaining() or _count(
        dsn, "SELECT count(*) FROM subscription_deliveries"
    ):  # gone, and the service stopped delivering them and forgot them
        if time.monotonic() > deadline:
            raise RuntimeError("deleted subscriptions are still there or still delivered")
        time.sleep(0.1)


async def _arrival(
    until: Callable[[Callable[[], bool]], Awaitable[None]], check: Callable[[], bool]
) -> float:
    await until(check)
    return time.perf_counter()


async def _latency(
    dsn: str, uid: UUID, receiver: _Receiver, watchers: _Watchers, path: str, count: int
) -> tuple[list[float], list[float]]:
    """Commit one event at a time; seconds from its COMMIT to the receiver's and to the watcher's arrival."""
    pool = await create_pool(dsn, 2, 10)
    push: list[float] = []
    sse: list[float] = []
    try:
        for _ in range(count):
            want_push, want_sse = receiver.count[path] + 1, watchers.count[0] + 1
            arrivals = asyncio.gather(
                _arrival(receiver.until, lambda: receiver.count[path] >= want_push),  # noqa: B023
                _arrival(watchers.until, lambda: watchers.count[0] >= want_sse),  # noqa: B023
            )
            committed = await _commit(pool, uid)
            at_receiver, at_watcher = await arrivals
            push.append(at_receiver - committed)
            sse.append(at_watcher - committed)
            await asyncio.sleep(0.005)
    finally:
        await pool.close()
    return push, sse


async def _burst(dsn: str, uid: UUID, n: int) -> float:
    """Commits `n` events in one transaction; the time COMMIT was sent."""
    pool = await create_pool(dsn, 1, 60)
    try:
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await outbox.append_many(conn, events.UPDATED, [(uid, {"n": i}) for i in range(n)])
            committed = time.perf_counter()
            await tx.commit()
            return committed
    finally:
        await pool.close()


async def _trickle(dsn: str, uid: UUID, stop: asyncio.Event) -> None:
    pool = await create_pool(dsn, 2, 10)
    try:
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            n += 1
            await asyncio.sleep(max(0.0, start + n / TRICKLE_PER_SECOND - time.monotonic()))
            await _commit(pool, uid)
    finally:
        await pool.close()


def measure(plan: Plan, workdir: Path) -> dict[str, Any]:
    burst = 2000 if plan.seconds >= 2 else 200
    latency_count = 200 if plan.seconds >= 2 else 30
    key = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with (
        stack.postgres() as (admin, described),
        running_cluster(workdir / "kube", controller_manager=False) as kube,
    ):
        kube.kubectl("apply", "--server-side", "-f", "-", input=subscription_crd_text())
        kube.wait_established(SUBSCRIPTION_CRD_NAME)
        kube.kubectl("create", "namespace", NAMESPACE)
        kube.kubectl("-n", NAMESPACE, "create", "secret", "generic", "hooks", f"--from-literal=key={key}")
        dsn = asyncio.run(create_database(admin))
        print(f"subscriptions: seeding {plan.seed_users} users", flush=True)
        ids_file = workdir / "subscription-ids.txt"
        ids = stack.seed_ids_file(dsn, plan.seed_users, ids_file)
        uid = UUID(ids[0])
        (workdir / "subscriptions").mkdir(exist_ok=True)
        service = stack.start_service(
            dsn,
            workdir / "subscriptions",
            SUBSCRIPTIONS_USERSERVICE=INSTANCE,
            SUBSCRIPTIONS_NAMESPACE=NAMESPACE,
            KUBECONFIG=str(kube.kubeconfig),
            SUBSCRIPTION_CLUSTER_NETWORKS="127.0.0.0/8",
            SUBSCRIPTION_POLL_SECONDS="0.5",
            SUBSCRIPTION_LEASE_SECONDS="5",
        )
        base = f"http://127.0.0.1:{service.info['http_port']}"
        loop = _Loop()
        try:
            receiver = _Receiver()
            loop.run(receiver.start())
            figures = [
                _latency_figures(loop, kube, dsn, uid, base, receiver, latency_count),
                _throughput_figure(loop, kube, dsn, uid, base, receiver, burst),
                _get_figure(loop, kube, dsn, uid, base, receiver, plan, ids_file),
            ]
        finally:
            loop.close()
            service.stop()
    return {"postgres": described, "figures": rounds.judge([f for group in figures for f in group])}


def _ms(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(seconds, 50) * 1000, 2),
        "p99_ms": round(percentile(seconds, 99) * 1000, 2),
    }


def _latency_figures(
    loop: _Loop, kube: KubeCluster, dsn: str, uid: UUID, base: str, receiver: _Receiver, count: int
) -> list[dict[str, Any]]:
    print(f"subscriptions: commit to receiver and to an SSE watcher, {count} commits", flush=True)
    _subscribe(kube, dsn, receiver.url, ["latency"])

    async def run() -> tuple[list[float], list[float]]:
        async with _Watchers(base, 1) as watchers:
            return await _latency(dsn, uid, receiver, watchers, "/latency", count)

    push, sse = loop.run(run())
    _unsubscribe(kube, dsn, ["latency"])
    fig = {
        "id": "subscription.latency",
        "group": "subscriptions",
        "what": "commit to the subscription's receiver (one POST, signed, 2xx), one commit at a time",
        "tool": "asyncpg commit, aiohttp receiver",
        "requests": count,
        **_ms(push),
        "baseline": "the same commits to an SSE watcher of /v1/events, measured together",
        **{f"baseline_{k}": v for k, v in _ms(sse).items()},
        "p50_ratio": ratio(percentile(push, 50), percentile(sse, 50)),
        "p99_ratio": ratio(percentile(push, 99), percentile(sse, 99)),
        "goal": "p99_ratio <= 1.5",
    }
    return [fig]


def _throughput_figure(
    loop: _Loop, kube: KubeCluster, dsn: str, uid: UUID, base: str, receiver: _Receiver, burst: int
) -> list[dict[str, Any]]:
    figures = []
    sse_rate = 0.0

    async def fan_out() -> float:
        async with _Watchers(base, MANY) as watchers:
            before = list(watchers.count)
            committed = await _burst(dsn, uid, burst)
            await watchers.until(
                lambda: all(c - b >= burst for c, b in zip(watchers.count, before, strict=True))
            )
            return time.perf_counter() - committed

    print(f"subscriptions: a burst of {burst} events to {MANY} SSE watchers", flush=True)
    sse_rate = MANY * burst / loop.run(fan_out())
    for n in (1, MANY):
        names = [f"burst-{n}-{i}" for i in range(n)]
        print(f"subscriptions: a burst of {burst} events to {n} subscription(s)", flush=True)
        _subscribe(kube, dsn, receiver.url, names)

        async def deliver(names: list[str] = names) -> float:
            committed = await _burst(dsn, uid, burst)
            await receiver.until(lambda: all(receiver.count[f"/{name}"] >= burst for name in names))
            return time.perf_counter() - committed

        rate = n * burst / loop.run(deliver())
        _unsubscribe(kube, dsn, names)
        figures.append(
            {
                "id": f"subscription.throughput.{n}",
                "group": "subscriptions",
                "what": f"deliveries per second, a burst of {burst} events to {n} subscription(s) (maxInFlight 1)",
                "tool": "aiohttp receiver",
                "deliveries_per_s": round(rate, 1),
                "baseline": f"the same burst fanned out to {MANY} SSE watchers: events received per second",
                "baseline_deliveries_per_s": round(sse_rate, 1),
                "deliveries_ratio": ratio(rate, sse_rate),
            }
        )
    return figures


def _get_figure(
    loop: _Loop,
    kube: KubeCluster,
    dsn: str,
    uid: UUID,
    base: str,
    receiver: _Receiver,
    plan: Plan,
    ids_file: Path,
) -> list[dict[str, Any]]:
    names = [f"busy-{i}" for i in range(MANY)]
    print(
        f"subscriptions: REST get, {plan.rounds} rounds with {MANY} subscriptions busy and without,"
        f" {TRICKLE_PER_SECOND} commits/s throughout",
        flush=True,
    )

    def load(target: str, subscribed: bool) -> Callable[[], Run]:
        def step() -> Run:
            if subscribed:
                _subscribe(kube, dsn, receiver.url, names)
            stop = asyncio.Event()
            writer = asyncio.run_coroutine_threadsafe(_trickle(dsn, uid, stop), loop.loop)
            try:
                return http_load.run(base, "get", plan.level, plan.seconds, ids_file, _tag(), target)
            finally:
                loop.loop.call_soon_threadsafe(stop.set)
                writer.result(60)
                if subscribed:
                    _unsubscribe(kube, dsn, names)

        return step

    runs = rounds.interleave(
        plan.rounds,
        [("with", load("with-subscriptions", True)), ("without", load("without", False))],
        _log,
    )
    fig = {
        "id": f"subscription.get-beside-delivery.c{plan.level}",
        "group": "subscriptions",
        "what": f"REST get, {plan.level} concurrent, while {MANY} subscriptions deliver {TRICKLE_PER_SECOND} commits/s",
        "baseline": "the same get and commits without subscriptions, interleaved rounds",
        "goal": "p99_ratio <= 1.2",
    }
    return [rounds.compare(fig, runs["with"], runs["without"])]
