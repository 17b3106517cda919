"""Listing: filters, keyset pagination, tokens, and paging while others insert."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from tests.support.users import new_user


async def create_many(http: aiohttp.ClientSession, count: int, **fields: object) -> list[dict[str, Any]]:
    async def one() -> dict[str, Any]:
        async with http.post("/v1/users", json=new_user(**fields)) as resp:
            assert resp.status == 201
            return await resp.json()  # type: ignore[no-any-return]

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def list_all(http: aiohttp.ClientSession, **params: str) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = []
    token = ""
    while True:
        query = {**params, **({"page_token": token} if token else {})}
        async with http.get("/v1/users", params=query) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        users.extend(page["users"])
        token = page["next_page_token"]
        if not token:
            return users


async def test_filters(http: aiohttp.ClientSession) -> None:
    ours = await create_many(http, 3, country="NZ")
    await create_many(http, 2, country="JP")
    listed = await list_all(http, country="nz")
    assert [u["id"] for u in listed] == [
        u["id"] for u in sorted(ours, key=lambda u: (u["created_at"], u["id"]))
    ]
    one = ours[1]
    assert [u["id"] for u in await list_all(http, nickname=one["nickname"])] == [one["id"]]
    assert [u["id"] for u in await list_all(http, email=one["email"].upper())] == [one["id"]]
    created = datetime.fromisoformat(one["created_at"])
    window = await list_all(
        http,
        country="NZ",
        created_after=(created - timedelta(microseconds=1)).isoformat(),
        created_before=(created + timedelta(microseconds=1)).isoformat(),
    )
    assert one["id"] in [u["id"] for u in window]
    assert all(u["created_at"] == one["created_at"] for u in window)


async def test_pages_are_stable_and_complete(http: aiohttp.ClientSession) -> None:
    ours = await create_many(http, 23, country="IS")
    seen = await list_all(http, country="IS", page_size="5")
    assert sorted(u["id"] for u in seen) == sorted(u["id"] for u in ours)
    assert seen == sorted(seen, key=lambda u: (u["created_at"], u["id"]))


async def test_token_is_bound_to_filters_and_tamper_evident(http: aiohttp.ClientSession) -> None:
    await create_many(http, 3, country="PT")
    async with http.get("/v1/users", params={"country": "PT", "page_size": "1"}) as resp:
        token = (await resp.json())["next_page_token"]
    assert token
    async with http.get("/v1/users", params={"country": "ES", "page_token": token}) as resp:
        assert resp.status == 400
        assert "different filters" in (await resp.json())["errors"][0]["message"]
    body, mac = token.split(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    async with http.get("/v1/users", params={"country": "PT", "page_token": forged}) as resp:
        assert resp.status == 400
    # page_size may change between pages (AIP-158).
    async with http.get("/v1/users", params={"country": "PT", "page_token": token, "page_size": "2"}) as resp:
        assert resp.status == 200


async def test_paging_during_concurrent_inserts_neither_repeats_nor_skips(
    http: aiohttp.ClientSession,
) -> None:
    existing = await create_many(http, 40, country="CL")
    stop = asyncio.Event()

    async def writer() -> int:
        # Bounded: an unbounded writer on a busy machine can outrun the pager forever.
        written = 0
        while not stop.is_set() and written < 60:
            await create_many(http, 2, country="CL")
            written += 2
        return written

    task = asyncio.create_task(writer())
    try:
        seen: list[dict[str, Any]] = []
        token = ""
        while True:
            params = {"country": "CL", "page_size": "3", **({"page_token": token} if token else {})}
            async with http.get("/v1/users", params=params) as resp:
                page = await resp.json()
            seen.extend(page["users"])
            token = page["next_page_token"]
            await asyncio.sleep(0.01)  # let the writer interleave
            if not token:
                break
    finally:
        stop.set()
        written = await task
    ids = [u["id"] for u in seen]
    assert written > 0
    assert len(ids) == len(set(ids)), "a user was repeated"
    assert {u["id"] for u in existing} <= set(ids), "a user that existed when paging began was skipped"
