"""Batch create (AIP-233) over REST and gRPC: all or none, problems by index, imported hashes, idempotency."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from passlib import hash as passlib_hash

from tests.support.users import new_user
from userservice.store import batch as batch_store
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

PASSWORD = "correct horse battery staple"
BCRYPT = passlib_hash.bcrypt.using(rounds=4).hash("an imported bcrypt password")
PBKDF2 = passlib_hash.pbkdf2_sha256.using(rounds=1000).hash("an imported pbkdf2 password")


def imported(password_hash: str, **fields: object) -> dict[str, object]:
    user = new_user(**fields)
    del user["password"]
    return {**user, "password_hash": password_hash}


async def batch(
    http: aiohttp.ClientSession, users: list[dict[str, object]], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], Any]:
    body = {"requests": [{"user": user} for user in users]}
    async with http.post("/v1/users:batchCreate", json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def verify(http: aiohttp.ClientSession, login: object, password: str) -> int:
    async with http.post("/v1/users:verifyPassword", json={"login": login, "password": password}) as resp:
        return resp.status


async def count_users(database: str, emails: list[object]) -> int:
    conn = await asyncpg.connect(database)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM users WHERE email = ANY($1::text[])", emails))
    finally:
        await conn.close()


async def test_creates_users_with_passwords_or_imported_hashes(
    http: aiohttp.ClientSession, database: str
) -> None:
    users = [new_user(), imported(BCRYPT), imported(PBKDF2)]
    status, body, _ = await batch(http, users)
    assert status == 200, body
    created = body["users"]
    assert [u["email"] for u in created] == [u["email"] for u in users]
    assert not any("password" in key for u in created for key in u)
    for user, password in zip(
        users, (PASSWORD, "an imported bcrypt password", "an imported pbkdf2 password"), strict=True
    ):
        assert await verify(http, user["email"], password) == 200
        assert await verify(http, user["email"], PASSWORD + "?") == 401
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT subject::text, count(*) FROM user_events WHERE type = $1 AND subject = ANY($2::uuid[]) "
            "GROUP BY subject",
            "io.userservice.user.created.v1",
            [u["id"] for u in created],
        )
    finally:
        await conn.close()
    assert sorted((r["subject"], r["count"]) for r in rows) == sorted((u["id"], 1) for u in created)


async def test_every_invalid_item_is_reported_by_index_and_nothing_is_created(
    http: aiohttp.ClientSession, database: str
) -> None:
    good = new_user()
    both = {**new_user(), "password_hash": BCRYPT}
    duplicate = new_user(email=str(good["email"]).upper())
    users = [good, new_user(email="not an email"), imported("$md5$not-accepted"), both, duplicate]
    status, body, _ = await batch(http, users)
    assert status == 400
    assert {e["field"] for e in body["errors"]} == {
        "requests[1].user.email",
        "requests[2].user.password_hash",
        "requests[3].user.password",
        "requests[4].user.email",
    }
    message = next(e["message"] for e in body["errors"] if e["field"] == "requests[2].user.password_hash")
    assert "$md5$" not in message and "bcrypt" in message  # names the accepted formats, not the input
    assert await count_users(database, [good["email"]]) == 0

    for shape in ({"requests": []}, {"requests": [{"user": new_user()}] * 1001}, {"users": []}):
        async with http.post("/v1/users:batchCreate", json=shape) as resp:
            assert resp.status == 400


async def test_all_or_none_when_a_nickname_is_taken(http: aiohttp.ClientSession, database: str) -> None:
    status, body, _ = await batch(http, [new_user()])
    taken = body["users"][0]["nickname"]
    users = [new_user(), new_user(nickname=taken), new_user()]
    status, body, _ = await batch(http, users)
    assert status == 409 and body["errors"][0]["field"] == "requests[1].user.nickname"
    assert await count_users(database, [u["email"] for u in users]) == 0


async def test_a_user_created_after_the_batchs_own_check_fails_the_whole_batch(
    http: aiohttp.ClientSession, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unique indexes guard the write itself: a nickname a concurrent create took after the batch's check is
    the same 409, and neither the batch's users nor any event of theirs is left."""
    status, body, _ = await batch(http, [new_user()])
    taken = body["users"][0]["nickname"]

    async def nothing_taken(
        conn: object, nicknames: list[str], emails: list[str]
    ) -> tuple[set[str], set[str]]:
        return set(), set()  # the race: the check saw the nickname free

    monkeypatch.setattr(batch_store, "taken", nothing_taken)
    conn = await asyncpg.connect(database)
    try:
        events_before = await conn.fetchval("SELECT count(*) FROM user_events")
        users = [new_user(), new_user(nickname=taken), new_user()]
        status, body, _ = await batch(http, users)
        assert status == 409 and body["errors"][0]["field"] == "nickname", body
        assert await count_users(database, [u["email"] for u in users]) == 0
        assert await conn.fetchval("SELECT count(*) FROM user_events") == events_before
    finally:
        await conn.close()


async def test_a_batchs_events_follow_its_order_in_one_transaction_with_one_notification(
    http: aiohttp.ClientSession, database: str
) -> None:
    """Each user's created event in request order (their cursors follow it), the caller recorded as for a single
    create, and one NOTIFY for the whole batch."""
    async with http.post("/v1/users", json=new_user()) as resp:
        assert resp.status == 201
        single = await resp.json()
    conn = await asyncpg.connect(database)
    notified: list[str] = []
    await conn.add_listener("userservice_events", lambda *args: notified.append(args[-1]))
    try:
        status, body, _ = await batch(http, [new_user(), imported(BCRYPT), new_user()])
        assert status == 200
        created = body["users"]
        rows = await conn.fetch(
            """SELECT tx::text AS tx, subject::text AS subject, type, data, authtype, authid FROM user_events
               WHERE subject = ANY($1::uuid[]) ORDER BY user_events.tx, seq""",
            [single["id"], *(u["id"] for u in created)],
        )
        await asyncio.sleep(0.2)  # the notification, sent at commit, arrives
    finally:
        await conn.close()
    alone, *rows = rows
    assert [r["subject"] for r in rows] == [u["id"] for u in created]
    assert len({r["tx"] for r in rows}) == 1
    assert {(r["type"], r["authtype"], r["authid"]) for r in rows} == {
        (alone["type"], alone["authtype"], alone["authid"])
    }
    assert [json.loads(r["data"])["user"] for r in rows] == created
    assert notified == [""]


async def test_a_deleted_users_nickname_and_email_are_free_in_a_batch_as_in_a_create(
    http: aiohttp.ClientSession,
) -> None:
    """Deleted users hold no claim on their nickname or email, whichever way a user is created."""
    status, body, _ = await batch(http, [new_user()])
    gone = body["users"][0]
    async with http.delete(f"/v1/users/{gone['id']}") as resp:
        assert resp.status == 204
    status, body, _ = await batch(http, [new_user(nickname=gone["nickname"], email=gone["email"])])
    assert status == 200 and body["users"][0]["nickname"] == gone["nickname"]


async def test_a_thousand_imported_users_in_one_request(http: aiohttp.ClientSession, database: str) -> None:
    users = [
        imported(PBKDF2) for _ in range(1000)
    ]  # about 300 KB: past MAX_BODY_BYTES, within the batch limit
    status, body, _ = await batch(http, users)
    assert status == 200 and len(body["users"]) == 1000
    assert [u["nickname"] for u in body["users"]] == [u["nickname"] for u in users]  # in request order
    assert await count_users(database, [u["email"] for u in users]) == 1000
    assert await verify(http, users[999]["nickname"], "an imported pbkdf2 password") == 200


async def test_idempotency_key_replays_the_batch(http: aiohttp.ClientSession, database: str) -> None:
    key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    users = [new_user(), imported(BCRYPT)]
    first = await batch(http, users, key)
    again = await batch(http, users, key)
    assert first[0] == again[0] == 200 and first[1] == again[1]
    assert again[2]["Idempotent-Replayed"] == "true"
    assert await count_users(database, [u["email"] for u in users]) == 2
    other_password = [{**users[0], "password": "a different long passphrase"}, users[1]]
    status, body, _ = await batch(http, other_password, key)
    assert status == 422 and body["type"].endswith("/idempotency-key-reused")


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return [v.field for v in bad.field_violations]


async def test_grpc_batch_create(http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub) -> None:
    users = [new_user(), imported(BCRYPT)]
    request = pb.BatchCreateUsersRequest(
        requests=[pb.CreateUserRequest(user=pb.User(**u)) for u in users],  # type: ignore[arg-type]
        request_id=f"batch-{uuid.uuid4()}",
    )
    response = await stub.BatchCreateUsers(request)
    assert [u.email for u in response.users] == [u["email"] for u in users]
    assert (await stub.BatchCreateUsers(request)).users == response.users  # replayed
    assert await verify(http, users[1]["email"], "an imported bcrypt password") == 200

    bad = pb.BatchCreateUsersRequest(
        requests=[
            pb.CreateUserRequest(user=pb.User(**new_user())),  # type: ignore[arg-type]
            pb.CreateUserRequest(user=pb.User(**imported("$2b$99$nonsense"))),  # type: ignore[arg-type]
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.BatchCreateUsers(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == ["requests[1].user.password_hash"]

    # A hash is accepted only in a batch: a single create refuses it.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateUser(pb.CreateUserRequest(user=pb.User(**{**new_user(), "password_hash": BCRYPT})))  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == ["password_hash"]


async def test_hashes_that_would_fail_at_every_check_or_cost_too_much_are_refused_by_index_and_reason(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub, database: str
) -> None:
    """An import proves each hash checkable: one that its library would refuse at every check (a 500 for ever, or
    a right password that never verifies) or whose work passes the ceiling is refused, named by index."""
    refused = {
        1: ("$2b$04$" + "z" * 53, "encoding"),
        2: ("$scrypt$ln=20,r=1,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43, "ln < 16 r"),
        3: ("$argon2id$v=19$m=0,t=2,p=1$c2FsdHNhbHQ$" + "A" * 43, "memory per lane"),
        4: ("$argon2id$v=19$m=65536,t=2,p=1$cw$" + "A" * 43, "salt"),
        5: ("$pbkdf2-sha256$1000000$c2FsdHNhbHQ$" + "A" * 454, "digest"),
        6: ("$pbkdf2-sha256$5000000$c2FsdHNhbHQ$" + "A" * 43, "ceiling"),
    }
    users = [imported(BCRYPT)] + [imported(encoded) for encoded, _ in refused.values()]
    status, body, _ = await batch(http, users)
    assert status == 400, body
    messages = {e["field"]: e["message"] for e in body["errors"]}
    assert set(messages) == {f"requests[{i}].user.password_hash" for i in refused}
    for i, (encoded, reason) in refused.items():
        assert reason in messages[f"requests[{i}].user.password_hash"]
        assert encoded[8:] not in messages[f"requests[{i}].user.password_hash"]
    assert await count_users(database, [u["email"] for u in users]) == 0

    request = pb.BatchCreateUsersRequest(
        requests=[pb.CreateUserRequest(user=pb.User(**imported(refused[1][0])))]  # type: ignore[arg-type]
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.BatchCreateUsers(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_batch_replayed_after_one_of_its_users_was_deleted_is_409_like_a_create(
    http: aiohttp.ClientSession,
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    users = [new_user(), new_user()]
    status, body, _ = await batch(http, users, key)
    assert status == 200
    deleted = body["users"][1]["id"]
    async with http.delete(f"/v1/users/{deleted}") as resp:
        assert resp.status == 204
    status, problem, _ = await batch(http, users, key)
    assert status == 409 and problem["type"].endswith("/created-user-deleted"), problem
    assert deleted in problem["detail"]
    async with http.post(f"/v1/users/{deleted}:undelete") as resp:
        assert resp.status == 200
    status, replay, headers = await batch(http, users, key)  # restored: the key replays again
    assert status == 200 and headers["Idempotent-Replayed"] == "true"
    assert [u["id"] for u in replay["users"]] == [u["id"] for u in body["users"]]
