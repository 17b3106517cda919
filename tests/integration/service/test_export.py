"""Export (GDPR Art. 15/20): the user, deleted or not, and its change history as kept, never its password hash."""

from __future__ import annotations

import uuid

import aiohttp
import grpc
import pytest

from tests.support.users import new_user
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


async def test_rest_export_holds_the_user_and_its_history_but_no_hash(
    http: aiohttp.ClientSession, database: str
) -> None:
    import asyncpg

    async with http.post("/v1/users", json=new_user()) as resp:
        user = await resp.json()
    url = f"/v1/users/{user['id']}"
    async with http.patch(url, json={"last_name": "Byron"}) as resp:
        assert resp.status == 200
    async with http.delete(url) as resp:
        assert resp.status == 204
    async with http.get(f"{url}:export") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        text = await resp.text()
        export = await resp.json()
    conn = await asyncpg.connect(database)
    try:
        password_hash = await conn.fetchval(
            "SELECT password_hash FROM users WHERE id = $1", uuid.UUID(user["id"])
        )
    finally:
        await conn.close()
    assert password_hash.startswith("$argon2id$") and password_hash not in text and "password" not in text

    assert export["user"]["id"] == user["id"] and export["user"]["last_name"] == "Byron"
    assert export["user"]["delete_time"]  # a deleted user is exported too
    history = [(e["type"].rsplit(".", 2)[1], e["subject"]) for e in export["events"]]
    assert history == [("created", user["id"]), ("updated", user["id"]), ("deleted", user["id"])]
    assert export["events"][0]["data"]["user"]["last_name"] == "Lovelace"
    assert export["events"][1]["data"]["changed_fields"] == ["last_name"]


async def test_rest_export_of_an_erased_or_unknown_user_is_404(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/users", json=new_user()) as resp:
        user = await resp.json()
    async with http.post(f"/v1/users/{user['id']}:erase") as resp:
        assert resp.status == 204
    for user_id in (user["id"], uuid.uuid4()):
        async with http.get(f"/v1/users/{user_id}:export") as resp:
            assert resp.status == 404
    async with http.get("/v1/users/nope:export") as resp:
        assert resp.status == 400


async def test_grpc_export(stub: pb_grpc.UserServiceStub) -> None:
    user = await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**new_user())))  # type: ignore[arg-type]
    await stub.UpdateUser(pb.UpdateUserRequest(user=pb.User(id=user.id, country="FR")))
    export = await stub.ExportUser(pb.ExportUserRequest(id=user.id))
    assert export.user.country == "FR" and not export.user.password
    assert [(e.type.rsplit(".", 2)[1], e.user.country) for e in export.events] == [
        ("created", "GB"),
        ("updated", "FR"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ExportUser(pb.ExportUserRequest(id=str(uuid.uuid4())))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
