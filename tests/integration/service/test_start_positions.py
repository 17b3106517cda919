"""Where a watcher starts: now (the default), the oldest retained event (`earliest`), or after a cursor; pruning
moves `earliest` and turns older cursors into 410 / OUT_OF_RANGE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import grpc
import pytest

from tests.support.pruning import prune_everything_so_far
from tests.support.sse import SseEvent, read_events
from tests.support.users import new_user
from userservice.store.db import create_pool
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database, 2, 10)
    yield pool
    await pool.close()


async def first_event(http: aiohttp.ClientSession, **params: str) -> tuple[aiohttp.ClientResponse, SseEvent]:
    resp = await http.get("/v1/events", params=params, timeout=aiohttp.ClientTimeout(total=60))
    assert resp.status == 200, await resp.text()
    event = await asyncio.wait_for(anext(read_events(resp)), 30)
    return resp, event


async def test_rest_earliest_now_and_cursor(http: aiohttp.ClientSession, pool: asyncpg.Pool) -> None:
    for _ in range(2):
        async with http.post("/v1/users", json=new_user()) as resp:
            pruned_user = await resp.json()
    old_cursor = await pool.fetchval(
        "SELECT tx::text || '-' || seq FROM user_events ORDER BY tx, seq LIMIT 1"
    )
    await prune_everything_so_far(pool)
    async with http.post("/v1/users", json=new_user()) as resp:
        kept = await resp.json()

    resp, event = await first_event(http, after="earliest")
    resp.close()
    assert (event.event, event.data["subject"]) == ("io.userservice.user.created.v1", kept["id"])
    assert event.data["subject"] != pruned_user["id"]
    kept_cursor = event.id

    async with http.get("/v1/events", params={"after": "now"}) as stream:
        assert await stream.content.readline() == b": connected\n"
        async with http.post("/v1/users", json=new_user()) as resp:
            later = await resp.json()
        event = await asyncio.wait_for(anext(read_events(stream)), 30)
    assert event.data["subject"] == later["id"]  # `kept` was committed before: not replayed

    resp, event = await first_event(http, after=kept_cursor)
    resp.close()
    assert event.data["subject"] == later["id"]
    async with http.get("/v1/events", params={"after": old_cursor}) as resp:
        assert resp.status == 410
        assert (await resp.json())["type"].endswith("/cursor-expired")
    async with http.get("/v1/events", params={"after": "latest"}) as resp:
        assert resp.status == 400
        assert "now or earliest" in (await resp.json())["errors"][0]["message"]


async def test_grpc_earliest_and_now(stub: pb_grpc.UserServiceStub, pool: asyncpg.Pool) -> None:
    await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**new_user())))  # type: ignore[arg-type]
    await prune_everything_so_far(pool)
    kept = await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**new_user())))  # type: ignore[arg-type]

    watch = stub.WatchUserEvents(pb.WatchUserEventsRequest(after_cursor="earliest"))
    first = await asyncio.wait_for(watch.read(), 30)
    watch.cancel()
    assert (first.type, first.subject) == ("io.userservice.user.created.v1", kept.id)

    watch = stub.WatchUserEvents(pb.WatchUserEventsRequest(after_cursor="now"))
    await watch.initial_metadata()
    later = await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**new_user())))  # type: ignore[arg-type]
    first = await asyncio.wait_for(watch.read(), 30)
    watch.cancel()
    assert first.subject == later.id

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.WatchUserEvents(pb.WatchUserEventsRequest(after_cursor="oldest")).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_start_is_exactly_one_cursor_or_word(http: aiohttp.ClientSession, pool: asyncpg.Pool) -> None:
    """No cursor with spaces around it, and no second `after`: either would be a guess at what was meant."""
    head = await pool.fetchval(
        "SELECT tx::text || '-' || seq FROM user_events ORDER BY tx DESC, seq DESC LIMIT 1"
    )
    for query in (f"after=%20{head}", f"after={head}%20", "after=%20now", f"after={head}&after=now"):
        async with http.get(f"/v1/events?{query}") as resp:
            assert resp.status == 400, query
            problem = await resp.json(content_type=None)
            assert [e["field"] for e in problem["errors"]] == ["after"], problem
