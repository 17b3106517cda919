"""Soft delete (AIP-164): a deleted user is gone for get and list, restorable until its purge_time, and holds
no claim on its nickname or email; maintenance purges it once its purge_time has passed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import aiohttp
import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.support.service import RunningService, in_process
from tests.support.sse import read_events
from tests.support.users import new_user
from userservice.core.maintenance import purge_once
from userservice.store.db import create_pool
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

THIRTY_DAYS = timedelta(days=30)


async def create(http: aiohttp.ClientSession, body: dict[str, object] | None = None) -> dict[str, object]:
    async with http.post("/v1/users", json=body or new_user()) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def listed(http: aiohttp.ClientSession, nickname: object, **params: str) -> list[dict[str, object]]:
    async with http.get("/v1/users", params={"nickname": str(nickname), **params}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["users"]  # type: ignore[no-any-return]


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in status.details)
    return info


async def test_rest_delete_hides_the_user_until_undelete(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    url = f"/v1/users/{user['id']}"
    async with http.delete(url) as resp:
        assert resp.status == 204
    async with http.get(url) as resp:
        assert resp.status == 404
    async with http.patch(url, json={"first_name": "Grace"}) as resp:
        assert resp.status == 404
    async with http.delete(url) as resp:
        assert resp.status == 404
    assert await listed(http, user["nickname"]) == []
    [deleted] = await listed(http, user["nickname"], show_deleted="true")
    delete_time = datetime.fromisoformat(deleted["delete_time"])  # type: ignore[arg-type]
    assert datetime.fromisoformat(deleted["purge_time"]) - delete_time == THIRTY_DAYS  # type: ignore[arg-type]
    assert deleted["version"] == user["version"] + 1  # type: ignore[operator]

    async with http.post(f"{url}:undelete", headers={"If-Match": '"v1"'}) as resp:
        assert resp.status == 412
    async with http.post(f"{url}:undelete", headers={"If-Match": str(deleted["etag"])}) as resp:
        assert resp.status == 200
        restored = await resp.json()
        assert resp.headers["ETag"] == restored["etag"]
    assert restored["version"] == user["version"] + 2  # type: ignore[operator]
    assert "delete_time" not in restored and "purge_time" not in restored
    async with http.get(url) as resp:
        assert resp.status == 200
    assert [u["id"] for u in await listed(http, user["nickname"])] == [user["id"]]


async def test_rest_undelete_refuses_an_active_or_unknown_user(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    async with http.post(f"/v1/users/{user['id']}:undelete") as resp:
        assert resp.status == 409
        assert (await resp.json())["errors"] == [
            {"field": "id", "message": f"user {user['id']} is not deleted"}
        ]
    async with http.post(f"/v1/users/{uuid.uuid4()}:undelete") as resp:
        assert resp.status == 404
    async with http.post("/v1/users/not-a-uuid:undelete") as resp:
        assert resp.status == 400
    # The verb is its own route: it is never read as part of a user id.
    async with http.get(f"/v1/users/{user['id']}:undelete") as resp:
        assert resp.status == 405


@pytest.mark.parametrize("field", ["email", "nickname"])
async def test_a_deleted_user_keeps_no_claim_so_undelete_can_conflict(
    http: aiohttp.ClientSession, field: str
) -> None:
    first = await create(http)
    async with http.delete(f"/v1/users/{first['id']}") as resp:
        assert resp.status == 204
    second = await create(http, new_user(**{field: first[field]}))
    async with http.post(f"/v1/users/{first['id']}:undelete") as resp:
        assert resp.status == 409
        problem = await resp.json()
    assert problem["type"].endswith("/already-exists") and problem["errors"][0]["field"] == field
    async with http.delete(f"/v1/users/{second['id']}") as resp:
        assert resp.status == 204
    async with http.post(f"/v1/users/{first['id']}:undelete") as resp:
        assert resp.status == 200


async def test_page_tokens_are_bound_to_show_deleted(http: aiohttp.ClientSession) -> None:
    for _ in range(2):
        await create(http, new_user(country="NO"))
    async with http.get("/v1/users", params={"country": "NO", "page_size": "1"}) as resp:
        token = (await resp.json())["next_page_token"]
    assert token
    async with http.get(
        "/v1/users", params={"country": "NO", "page_size": "1", "show_deleted": "true", "page_token": token}
    ) as resp:
        assert resp.status == 400
    async with http.get("/v1/users", params={"show_deleted": "yes"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["field"] == "show_deleted"


async def test_grpc_delete_list_and_undelete(stub: pb_grpc.UserServiceStub) -> None:
    user = await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**new_user())))  # type: ignore[arg-type]
    await stub.DeleteUser(pb.DeleteUserRequest(id=user.id))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetUser(pb.GetUserRequest(id=user.id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    by_nickname = f'nickname = "{user.nickname}"'
    assert not (await stub.ListUsers(pb.ListUsersRequest(filter=by_nickname))).users
    [deleted] = (await stub.ListUsers(pb.ListUsersRequest(filter=by_nickname, show_deleted=True))).users
    assert deleted.purge_time.ToDatetime() - deleted.delete_time.ToDatetime() == THIRTY_DAYS

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UndeleteUser(pb.UndeleteUserRequest(id=user.id, etag=user.etag))
    assert info.value.code() == grpc.StatusCode.ABORTED
    restored = await stub.UndeleteUser(pb.UndeleteUserRequest(id=user.id, etag=deleted.etag))
    assert restored.version == user.version + 2 and not restored.HasField("delete_time")
    assert (await stub.GetUser(pb.GetUserRequest(id=user.id))).id == user.id

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UndeleteUser(pb.UndeleteUserRequest(id=user.id))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UndeleteUser(pb.UndeleteUserRequest(id=str(uuid.uuid4())))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_grpc_undelete_conflict_names_the_field(stub: pb_grpc.UserServiceStub) -> None:
    body = new_user()
    first = await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**body)))  # type: ignore[arg-type]
    await stub.DeleteUser(pb.DeleteUserRequest(id=first.id))
    await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**new_user(email=body["email"]))))  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UndeleteUser(pb.UndeleteUserRequest(id=first.id))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(info.value).metadata["field"] == "email"


async def test_idempotent_replay_follows_the_user_through_delete_and_undelete(
    http: aiohttp.ClientSession,
) -> None:
    body, key = new_user(), {"Idempotency-Key": str(uuid.uuid4())}
    async with http.post("/v1/users", json=body, headers=key) as resp:
        user = await resp.json()
    async with http.delete(f"/v1/users/{user['id']}") as resp:
        assert resp.status == 204
    async with http.post("/v1/users", json=body, headers=key) as resp:
        assert resp.status == 409
        assert "undelete it" in (await resp.json())["detail"]
    async with http.post(f"/v1/users/{user['id']}:undelete") as resp:
        assert resp.status == 200
    async with http.post("/v1/users", json=body, headers=key) as resp:
        assert resp.status == 201 and resp.headers["Idempotent-Replayed"] == "true"
        assert (await resp.json())["id"] == user["id"]


@pytest.fixture(scope="module")
async def expiring(database: str) -> AsyncIterator[tuple[RunningService, asyncpg.Pool]]:
    """A service whose deleted users are due for purging at once, and a pool to run maintenance with."""
    pool = await create_pool(database, 2, 10)
    try:
        async with in_process(database, delete_retention=0.0, maintenance_interval=3600.0) as running:
            yield running, pool
    finally:
        await pool.close()


async def test_purge_removes_the_user_its_keys_and_announces_it_without_personal_data(
    expiring: tuple[RunningService, asyncpg.Pool],
) -> None:
    running, pool = expiring
    async with aiohttp.ClientSession(base_url=running.http) as http:
        async with http.get("/v1/events", timeout=aiohttp.ClientTimeout(total=60)) as stream:
            assert await stream.content.readline() == b": connected\n"
            body, key = new_user(), {"Idempotency-Key": str(uuid.uuid4())}
            async with http.post("/v1/users", json=body, headers=key) as resp:
                user = await resp.json()
            url = f"/v1/users/{user['id']}"
            async with http.delete(url) as resp:
                assert resp.status == 204
            async with http.post(f"{url}:undelete") as resp:
                assert resp.status == 200
            async with http.delete(url) as resp:
                assert resp.status == 204
            assert await purge_once(pool) == 1
            assert await purge_once(pool) == 0

            types, events = [], read_events(stream)
            while len(types) < 5:
                event = await asyncio.wait_for(anext(events), 30)
                if event.data["subject"] == user["id"]:
                    types.append((event.event.rsplit(".", 2)[1], event.data["data"]))
        assert [t for t, _ in types] == ["created", "deleted", "undeleted", "deleted", "purged"]
        assert types[-1][1] == {}
        assert types[1][1]["user"]["delete_time"]

        async with http.post(f"{url}:undelete") as resp:
            assert resp.status == 404
        assert await listed(http, user["nickname"], show_deleted="true") == []
        # Retained events still hold the purged user's data, so an export still shows them.
        async with http.get(f"{url}:export") as resp:
            export = await resp.json()
        assert export["user"] is None
        assert [e["type"].rsplit(".", 2)[1] for e in export["events"]] == [t for t, _ in types]
        # The purge forgot the key with the user's data and hash: the same request now creates a new user.
        async with http.post("/v1/users", json=body, headers=key) as resp:
            assert resp.status == 201 and "Idempotent-Replayed" not in resp.headers
            assert (await resp.json())["id"] != user["id"]
        async with pool.acquire() as conn:
            assert not await conn.fetchval("SELECT count(*) FROM users WHERE id = $1", uuid.UUID(user["id"]))


async def test_grpc_sees_the_purge_event_without_a_user(
    expiring: tuple[RunningService, asyncpg.Pool],
) -> None:
    running, pool = expiring
    async with grpc.aio.insecure_channel(running.grpc) as channel:
        stub = pb_grpc.UserServiceStub(channel)
        watch = stub.WatchUserEvents(pb.WatchUserEventsRequest())
        await watch.initial_metadata()
        user = await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**new_user())))  # type: ignore[arg-type]
        await stub.DeleteUser(pb.DeleteUserRequest(id=user.id))
        assert await purge_once(pool) == 1
        seen = []
        async for event in watch:
            if event.subject == user.id:
                seen.append(event)
            if len(seen) == 3:
                break
        watch.cancel()
    assert [e.type for e in seen] == [
        "io.userservice.user.created.v1",
        "io.userservice.user.deleted.v1",
        "io.userservice.user.purged.v1",
    ]
    assert seen[1].user.HasField("purge_time") and not seen[2].HasField("user")
