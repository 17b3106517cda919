"""SCIM figures: get by id and a `userName eq` filter against the native REST get in the same rounds, and paging
through many users the way identity providers do (startIndex 1, 101, 201, ... to the end, count=100): the p99 of
pages near the end against the p99 of pages near the start of the same walk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg

from bench import rounds
from bench.stats import Run, percentile

GET_GOAL = "rps_ratio >= 0.8"
PAGING_GOAL = "p99_ratio <= 2"
PAGE = 100  # what Okta and Entra ask for
EDGE_PAGES = 100  # pages compared at each end of the walk


def steps(rest: Callable[[str, str], Callable[[], Run]]) -> list[tuple[str, Callable[[], Run]]]:
    """The SCIM load runs, for rounds.interleave beside the native `rest.get`."""
    return [
        ("rest.scim_get", rest("scim_get", "service-scim")),
        ("rest.scim_filter", rest("scim_filter", "service-scim")),
    ]


def figures(runs: dict[str, list[Run]], c: int) -> list[dict[str, Any]]:
    out = []
    for op, what in (
        ("scim_get", "SCIM get by id"),
        ("scim_filter", 'SCIM filter userName eq "…", one result'),
    ):
        fig = {
            "id": f"rest.{op}.c{c}",
            "group": "service",
            "what": f"{what}, {c} concurrent",
            "baseline": "REST get by id, same rounds",
            "goal": GET_GOAL,
        }
        out.append(rounds.compare(fig, runs[f"rest.{op}"], runs["rest.get"]))
    return out


async def seed_many(dsn: str, count: int) -> None:
    """`count` more users, written by PostgreSQL itself (generate_series): no rows cross the wire. The table's
    indexes (but those of its constraints) are built once after the rows rather than updated by each row: the
    same indexes, sooner."""
    conn = await asyncpg.connect(dsn)
    try:
        indexes = await conn.fetch(
            """SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
               FROM pg_index i
               WHERE i.indrelid = 'users'::regclass
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"""
        )
        async with conn.transaction():
            for index in indexes:
                await conn.execute(f"DROP INDEX {index['name']}")
            await conn.execute(
                """INSERT INTO users (id, first_name, last_name, nickname, email, country, password_hash,
                                      created_at, updated_at)
                   SELECT gen_random_uuid(), 'Page', 'Walker', 'walker' || n, 'walker' || n || '@example.com',
                          NULL, NULL, timestamptz '2020-01-01' + n * interval '1 second', now()
                   FROM generate_series(1, $1) AS n""",
                count,
            )
            await conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            for index in indexes:
                await conn.execute(index["definition"])
        await conn.execute("VACUUM (ANALYZE) users")
    finally:
        await conn.close()


async def walk(base_url: str) -> tuple[list[float], int]:
    """Every page of GET /scim/v2/Users in order, as an IdP's full import does; each page's latency (seconds)."""
    latencies: list[float] = []
    start, total = 1, None
    async with aiohttp.ClientSession(base_url) as http:
        while total is None or start <= total:
            began = time.perf_counter()
            async with http.get(
                "/scim/v2/Users", params={"startIndex": str(start), "count": str(PAGE)}
            ) as resp:
                body = await resp.json(content_type=None)
            latencies.append(time.perf_counter() - began)
            if resp.status != 200:
                raise RuntimeError(f"page {start}: {resp.status} {body}")
            total = body["totalResults"]
            if not body["Resources"]:
                break
            start += len(body["Resources"])
    return latencies, total or 0


def paging(dsn: str, base_url: str, users: int, seeded: int) -> dict[str, Any]:
    """Seeds up to `users` users, walks them all, and compares the pages at both ends of the walk."""
    print(f"seeding {users - seeded} more users for the SCIM paging walk", flush=True)
    began = time.monotonic()
    asyncio.run(seed_many(dsn, users - seeded))
    seconds = time.monotonic() - began
    print(f"  seeded in {seconds:.1f} s; walking startIndex 1, 101, ... with count={PAGE}", flush=True)
    latencies, total = asyncio.run(walk(base_url))
    # The first page counts the matches (the walk's total); the pages after it are what paging costs.
    first, last = latencies[1 : 1 + EDGE_PAGES], latencies[-EDGE_PAGES:]
    fig: dict[str, Any] = {
        "id": f"rest.scim_paging.{users}",
        "group": "service",
        "what": f"SCIM paging through {total} users, count={PAGE}: p99 of the last {len(last)} pages",
        "baseline": f"p99 of pages 2-{len(first) + 1} of the same walk",
        "goal": PAGING_GOAL,
        "tool": "aiohttp client, one page at a time",
        "pages": len(latencies),
        "walk_seconds": round(sum(latencies), 1),
        "counting_page_ms": round(latencies[0] * 1000, 2),
        "seed_seconds": round(seconds, 1),
    }
    return rounds.summarize(
        fig,
        {"p99_ms": [percentile(last, 99) * 1000]},
        {"p99_ms": [percentile(first, 99) * 1000]},
    )
