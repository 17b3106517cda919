"""Erasure (GDPR Art. 17) reaches every copy of a user's data: its row, its events' data and the idempotency
keys holding its data or hash. The events keep their place in the stream, so nothing replays the data."""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import grpc
import pytest

from tests.support.schema import occurrences
from tests.support.sse import SseEvent, read_events
from tests.support.users import new_user
from userservice.store.db import create_pool
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

TYPES = ["created", "updated", "deleted", "erased"]


@pytest.fixture(scope="module")
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database, 2, 10)
    yield pool
    await pool.close()


def personal() -> dict[str, object]:
    """A user whose every identifying value is unique, so a search for it finds only its own copies."""

    def word() -> str:
        return "".join(random.choices(string.ascii_lowercase, k=14))

    return new_user(
        first_name=word().title(), last_name=word().title(), nickname=word(), email=f"{word()}@example.com"
    )


async def last_cursor(pool: asyncpg.Pool) -> str:
    """The newest event's cursor (the stream's start, 0-0, before the first)."""
    cursor: str = await pool.fetchval(
        """SELECT coalesce((SELECT tx::text || '-' || seq FROM user_events ORDER BY tx DESC, seq DESC LIMIT 1),
                           '0-0')"""
    )
    return cursor


async def rest_history(
    http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> tuple[dict[str, object], list[str]]:
    """A user created with an idempotency key, renamed (so an older email lives on in an event) and deleted; and
    every identifying value it ever had, including its password hash."""
    body = personal()
    async with http.post("/v1/users", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}) as resp:
        user = await resp.json()
    renamed = personal()
    async with http.patch(f"/v1/users/{user['id']}", json={"email": renamed["email"]}) as resp:
        assert resp.status == 200
    password_hash = await pool.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", uuid.UUID(user["id"])
    )
    async with http.delete(f"/v1/users/{user['id']}") as resp:
        assert resp.status == 204
    needles = [str(body[k]) for k in ("first_name", "last_name", "nickname", "email")]
    return user, [*needles, str(renamed["email"]), password_hash]


async def events_of(http: aiohttp.ClientSession, after: str, subject: object) -> list[SseEvent]:
    async with http.get(
        "/v1/events", params={"after": after}, timeout=aiohttp.ClientTimeout(total=60)
    ) as resp:
        assert resp.status == 200
        got = []
        async for event in read_events(resp):
            if event.data["subject"] == subject:
                got.append(event)
                if event.event.endswith(".erased.v1"):
                    return got
    raise AssertionError("the stream ended")


async def test_rest_erase_leaves_no_copy_in_any_table(
    http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    before = await last_cursor(pool)
    user, needles = await rest_history(http, pool)
    tables = await occurrences(pool, needles)
    assert {
        "users.email",
        "user_events.data",
        "idempotency_keys.response",
        "idempotency_keys.password_hash",
    } <= set(tables)
    async with http.post(f"/v1/users/{user['id']}:erase") as resp:
        assert resp.status == 204
    assert await occurrences(pool, needles) == []

    events = await events_of(http, before, user["id"])
    assert [e.event.rsplit(".", 2)[1] for e in events] == TYPES
    assert [e.data["data"] for e in events] == [{"erased": True}] * 3 + [{}]
    assert all(not any(n.lower() in str(e.data).lower() for n in needles) for e in events)

    async with http.post(f"/v1/users/{user['id']}:erase") as resp:
        assert resp.status == 404  # nothing of it is left
    async with http.post(f"/v1/users/{uuid.uuid4()}:erase") as resp:
        assert resp.status == 404


async def test_erasing_one_user_of_a_batch_forgets_the_batchs_idempotency_key(
    http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    """A batch's stored response holds every user it created: erasing any of them forgets the key, so a replay is
    a new request and never answers with the erased user's data."""
    key = str(uuid.uuid4())
    body = {"requests": [{"user": personal()} for _ in range(3)]}
    async with http.post("/v1/users:batchCreate", json=body, headers={"Idempotency-Key": key}) as resp:
        assert resp.status == 200, await resp.text()
        users = (await resp.json())["users"]
    erased = users[1]
    needles = [str(erased[f]) for f in ("first_name", "last_name", "nickname", "email")]
    assert "idempotency_keys.response" in await occurrences(pool, needles)
    async with http.post(f"/v1/users/{erased['id']}:erase") as resp:
        assert resp.status == 204
    assert await occurrences(pool, needles) == []
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", key) == 0

    async with http.post("/v1/users:batchCreate", json=body, headers={"Idempotency-Key": key}) as resp:
        replay = await resp.text()
    assert resp.status == 409, replay  # the others still hold their nicknames: a new request, refused as one
    assert erased["id"] not in replay and not any(n.lower() in replay.lower() for n in needles)


async def test_erase_reaches_an_active_user_and_frees_its_identity(
    http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    body = personal()
    async with http.post("/v1/users", json=body) as resp:
        user = await resp.json()
    async with http.post(f"/v1/users/{user['id']}:erase") as resp:
        assert resp.status == 204
    async with http.get(f"/v1/users/{user['id']}") as resp:
        assert resp.status == 404
    async with http.post(f"/v1/users/{user['id']}:undelete") as resp:
        assert resp.status == 404
    async with http.post("/v1/users", json=body) as resp:
        assert resp.status == 201
    assert await occurrences(pool, [str(user["id"])]) == []  # not even in idempotency keys or event data


async def test_grpc_erase_and_the_stream_replays_only_tombstones(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub, pool: asyncpg.Pool
) -> None:
    before = await last_cursor(pool)
    body = personal()
    request = pb.CreateUserRequest(user=pb.User(**body), request_id=str(uuid.uuid4()))  # type: ignore[arg-type]
    user = await stub.CreateUser(request)
    await stub.UpdateUser(
        pb.UpdateUserRequest(user=pb.User(id=user.id, first_name=str(personal()["first_name"])))
    )
    await stub.DeleteUser(pb.DeleteUserRequest(id=user.id))
    await stub.EraseUser(pb.EraseUserRequest(id=user.id))
    needles = [str(body[k]) for k in ("first_name", "last_name", "nickname", "email")]
    assert await occurrences(pool, needles) == []

    seen = []
    watch = stub.WatchUserEvents(pb.WatchUserEventsRequest(after_cursor=before))
    async for event in watch:
        if event.subject == user.id:
            seen.append(event)
            if event.type.endswith(".erased.v1"):
                break
    watch.cancel()
    assert [e.type.rsplit(".", 2)[1] for e in seen] == TYPES
    assert [e.erased for e in seen] == [True, True, True, False]
    assert not any(e.HasField("user") or e.changed_fields for e in seen)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.EraseUser(pb.EraseUserRequest(id=user.id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # The request id went with the user's data: the same request creates a new user.
    assert (await stub.CreateUser(request)).id != user.id


async def test_erase_after_purge_still_scrubs_the_events(
    http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    from userservice.core.maintenance import purge_once

    body = personal()
    async with http.post("/v1/users", json=body) as resp:
        user = await resp.json()
    async with http.delete(f"/v1/users/{user['id']}") as resp:
        assert resp.status == 204
    await pool.execute("UPDATE users SET purge_time = now() WHERE id = $1", uuid.UUID(user["id"]))
    assert await purge_once(pool) == 1
    assert await occurrences(pool, [str(body["email"])]) == [
        "user_events.data"
    ]  # retained events still hold it
    async with http.post(f"/v1/users/{user['id']}:erase") as resp:
        assert resp.status == 204
    assert await occurrences(pool, [str(body["email"])]) == []
