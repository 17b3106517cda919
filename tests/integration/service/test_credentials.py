"""Checking passwords over REST and gRPC, with failures throttled in PostgreSQL across replicas."""

# ruff: noqa: RUF001 # look-alike characters (fullwidth, ligatures) are what NFKC is tested with

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from argon2 import PasswordHasher, Type
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from passlib import hash as passlib_hash

from tests.support.postgres import create_database, drop_database
from tests.support.service import RunningService, ServiceProcess, in_process
from tests.support.users import new_user
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

PASSWORD = "correct horse battery staple"
WRONG = "Tr0ub4dor&3 is not it"
# The module's services lock an account after 5 failures for 2 s, doubling; callers (all tests share
# 127.0.0.1) only far later, so that one test's guesses never lock another's caller.
THROTTLE = {"lockout_threshold": 5, "caller_lockout_threshold": 100_000, "lockout_base": 2.0}


@pytest.fixture(scope="module")
async def service(database: str) -> AsyncIterator[RunningService]:
    async with in_process(database, **THROTTLE) as running:
        yield running


async def create(http: aiohttp.ClientSession, **fields: object) -> dict[str, Any]:
    async with http.post("/v1/users", json=new_user(**fields)) as resp:
        assert resp.status == 201, await resp.text()
        created: dict[str, Any] = await resp.json()
        return created


async def verify(http: aiohttp.ClientSession, login: str, password: str) -> tuple[int, dict[str, Any], Any]:
    async with http.post("/v1/users:verifyPassword", json={"login": login, "password": password}) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


def status_details(error: grpc.aio.AioRpcError) -> list[Any]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found = []
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo, error_details_pb2.BadRequest):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found.append(message)
    return found


async def grpc_error(call: Any, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value


def fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if ch.isalnum() else ch for ch in text)


async def test_verify_by_email_or_nickname_in_any_canonical_spelling(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    for login in (user["email"], user["email"].upper(), user["nickname"], fullwidth(user["nickname"])):
        status, body, headers = await verify(http, login, PASSWORD)
        assert status == 200, body
        assert body == user and headers["ETag"] == user["etag"]
        assert not any("password" in key for key in body)


async def test_wrong_password_and_unknown_login_get_one_answer_for_one_hash_each(
    service: RunningService,
    http: aiohttp.ClientSession,
) -> None:
    user = await create(http)

    async def hashes_spent() -> float:
        async with http.get(f"{service.management}/metrics") as resp:
            text = await resp.text()
        assert user["email"] not in text and user["nickname"] not in text and WRONG not in text
        line = next(
            x for x in text.splitlines() if x.startswith("userservice_password_hash_duration_seconds_count")
        )
        return float(line.split()[-1])

    answers = []
    for login in (user["email"], "nobody@example.com", "no-such-nickname", "neither @ nor a nickname"):
        before = await hashes_spent()
        status, body, headers = await verify(http, login, WRONG)
        assert status == 401 and headers["Content-Type"] == "application/problem+json"
        assert await hashes_spent() == before + 1, login
        answers.append(body)
    assert all(a == answers[0] for a in answers), answers
    assert answers[0]["type"].endswith("/unauthenticated")
    async with http.get(f"{service.management}/metrics") as resp:
        text = await resp.text()
    for outcome in ("success", "wrong_password", "unknown_login"):
        assert f'userservice_password_verifications_total{{outcome="{outcome}"}}' in text


async def test_requests_that_are_not_a_login_and_password_are_invalid(http: aiohttp.ClientSession) -> None:
    for body, field in (
        ({"password": PASSWORD}, "login"),
        ({"login": "someone", "password": ""}, "password"),
        ({"login": "someone", "password": PASSWORD, "admin": True}, "admin"),
        ({"login": 7, "password": PASSWORD}, "login"),
    ):
        async with http.post("/v1/users:verifyPassword", json=body) as resp:
            assert resp.status == 400
            problem = await resp.json(content_type=None)
        assert [e["field"] for e in problem["errors"]] == [field]
    async with http.get("/v1/users:verifyPassword") as resp:
        assert resp.status == 405  # the custom method is its own route, not /v1/users/{id}


async def test_lock_after_repeated_failures_reveals_nothing_and_grows(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub
) -> None:
    user = await create(http)
    for _ in range(5):
        status, _, _ = await verify(http, user["nickname"], WRONG)
        assert status == 401
    right = await verify(http, user["nickname"], PASSWORD)
    wrong = await verify(http, user["email"], WRONG)
    for status, body, headers in (right, wrong):
        assert status == 429 and body["type"].endswith("/locked")
        assert 1 <= int(headers["Retry-After"]) <= 2
    assert right[1] == wrong[1]  # the right password is not told apart while locked
    error = await grpc_error(
        stub.VerifyPassword(pb.VerifyPasswordRequest(login=user["email"], password=PASSWORD)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    details = status_details(error)
    assert any(isinstance(d, error_details_pb2.ErrorInfo) and d.reason == "LOCKED" for d in details)
    retry = next(d for d in details if isinstance(d, error_details_pb2.RetryInfo))
    assert 1 <= retry.retry_delay.seconds <= 2

    await asyncio.sleep(int(right[2]["Retry-After"]) + 0.1)
    status, _, _ = await verify(http, user["nickname"], WRONG)
    assert status == 401  # the lock ran out: one more guess is checked, and fails ...
    status, _, headers = await verify(http, user["nickname"], PASSWORD)
    assert status == 429 and int(headers["Retry-After"]) >= 3  # ... and locks twice as long


async def test_a_success_resets_the_count(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    for _ in range(2):
        for _ in range(4):
            assert (await verify(http, user["email"], WRONG))[0] == 401
        assert (await verify(http, user["email"], PASSWORD))[0] == 200


async def test_grpc_verify_password(http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub) -> None:
    user = await create(http)
    found = await stub.VerifyPassword(pb.VerifyPasswordRequest(login=user["nickname"], password=PASSWORD))
    assert (found.id, found.email, found.etag, found.password) == (
        user["id"],
        user["email"],
        user["etag"],
        "",
    )
    for login in (user["nickname"], "nobody@example.com"):
        error = await grpc_error(
            stub.VerifyPassword(pb.VerifyPasswordRequest(login=login, password=WRONG)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert error.details() == "the login or password is wrong"
        [info] = status_details(error)
        assert info.reason == "WRONG_CREDENTIALS"
    error = await grpc_error(
        stub.VerifyPassword(pb.VerifyPasswordRequest(password=PASSWORD)), grpc.StatusCode.INVALID_ARGUMENT
    )
    [bad] = status_details(error)
    assert [v.field for v in bad.field_violations] == ["login"]


async def guess_concurrently(
    database: str, http: aiohttp.ClientSession, rest_replica: str, grpc_replica: str
) -> None:
    """20 wrong guesses at once, half over REST to one replica and half over gRPC to the other, lock an account
    whose threshold is 20; 19 do not. Each replica counts in PostgreSQL with one atomic upsert."""
    async with (
        aiohttp.ClientSession(base_url=rest_replica) as rest,
        grpc.aio.insecure_channel(grpc_replica) as channel,
    ):
        stub = pb_grpc.UserServiceStub(channel)

        async def guess(n: int, login: str) -> str:
            if n % 2:
                return str((await verify(rest, login, WRONG))[0])
            try:
                await stub.VerifyPassword(pb.VerifyPasswordRequest(login=login, password=WRONG))
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return "OK"

        locked, spared = await create(http), await create(http)
        for user, guesses, after in ((locked, 20, 429), (spared, 19, 200)):
            answers = await asyncio.gather(*(guess(n, user["email"]) for n in range(guesses)))
            assert sorted(set(answers)) == ["401", "UNAUTHENTICATED"], answers
            assert (await verify(rest, user["email"], PASSWORD))[0] == after
    conn = await asyncpg.connect(database)
    try:
        count = await conn.fetchval(
            "SELECT failures FROM credential_failures WHERE scope = 'account' AND subject = $1", locked["id"]
        )
    finally:
        await conn.close()
    assert count == 20


async def test_twenty_concurrent_wrong_guesses_on_two_replicas_count_as_twenty(
    database: str, http: aiohttp.ClientSession
) -> None:
    settings = {**THROTTLE, "lockout_threshold": 20}
    async with in_process(database, **settings) as one, in_process(database, **settings) as two:
        await guess_concurrently(database, http, one.http, two.grpc)


async def test_twenty_concurrent_wrong_guesses_on_two_serve_processes_count_as_twenty(
    database: str, http: aiohttp.ClientSession
) -> None:
    env = {"LOGIN_LOCKOUT_THRESHOLD": "20", "LOGIN_CALLER_LOCKOUT_THRESHOLD": "100000"}
    replicas = [ServiceProcess(database, env=env).start(), ServiceProcess(database, env=env).start()]
    try:
        await guess_concurrently(database, http, replicas[0].http, replicas[1].grpc)
    finally:
        for replica in replicas:
            replica.kill()


async def test_a_caller_is_locked_across_accounts(postgres_dsn: str) -> None:
    """Guesses spread over many logins (here: logins no user has) lock the caller, whatever account it
    tries next, over REST and gRPC alike."""
    dsn = await create_database(postgres_dsn)
    try:
        async with (
            in_process(dsn, lockout_threshold=0, caller_lockout_threshold=3, lockout_base=60.0) as running,
            aiohttp.ClientSession(base_url=running.http) as http,
            grpc.aio.insecure_channel(running.grpc) as channel,
        ):
            user = await create(http)
            for n in range(3):
                assert (await verify(http, f"nobody{n}@example.com", WRONG))[0] == 401
            status, _, headers = await verify(http, user["email"], PASSWORD)
            assert status == 429 and int(headers["Retry-After"]) > 50
            await grpc_error(
                pb_grpc.UserServiceStub(channel).VerifyPassword(
                    pb.VerifyPasswordRequest(login=user["nickname"], password=PASSWORD)
                ),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
    finally:
        await drop_database(postgres_dsn, dsn)


async def lock_out(http: aiohttp.ClientSession, user: dict[str, Any]) -> None:
    for _ in range(THROTTLE["lockout_threshold"]):
        assert (await verify(http, user["email"], WRONG))[0] == 401
    assert (await verify(http, user["email"], PASSWORD))[0] == 429


async def test_unlock_clears_a_lockout(http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub) -> None:
    user = await create(http)
    await lock_out(http, user)
    async with http.post(f"/v1/users/{user['id']}:unlock") as resp:
        assert resp.status == 200 and (await resp.json()) == user
    assert (await verify(http, user["email"], PASSWORD))[0] == 200

    await lock_out(http, user)
    unlocked = await stub.UnlockUser(pb.UnlockUserRequest(id=user["id"]))
    assert unlocked.id == user["id"]
    assert (await verify(http, user["nickname"], PASSWORD))[0] == 200

    async with http.post("/v1/users/0b7e5b42-5c3c-4a4c-9d2c-8f1f0e0f5a11:unlock") as resp:
        assert resp.status == 404
    async with http.post("/v1/users/not-an-id:unlock") as resp:
        assert resp.status == 400
    await grpc_error(stub.UnlockUser(pb.UnlockUserRequest(id=str(uuid.uuid4()))), grpc.StatusCode.NOT_FOUND)


async def password_events(database: str, user_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT data::text FROM user_events WHERE subject = $1 AND type = $2 ORDER BY seq",
            uuid.UUID(user_id),
            "io.userservice.user.password_changed.v1",
        )
    finally:
        await conn.close()
    return [json.loads(row["data"]) for row in rows]


async def test_change_password_needs_the_current_one_and_is_throttled(
    http: aiohttp.ClientSession, database: str
) -> None:
    user = await create(http)
    url = f"/v1/users/{user['id']}:changePassword"
    new = "a different long passphrase"
    async with http.post(url, json={"current_password": WRONG, "new_password": new}) as resp:
        assert resp.status == 401 and (await resp.json(content_type=None))["type"].endswith(
            "/unauthenticated"
        )
    async with http.post(url, json={"current_password": PASSWORD, "new_password": "short"}) as resp:
        assert resp.status == 400
        assert [e["field"] for e in (await resp.json(content_type=None))["errors"]] == ["new_password"]
    async with http.post(url, json={"current_password": PASSWORD, "new_password": new}) as resp:
        assert resp.status == 200
        changed = await resp.json()
    assert changed["version"] == user["version"] + 1
    assert (await verify(http, user["email"], PASSWORD))[0] == 401
    assert (await verify(http, user["email"], new))[0] == 200
    [event] = await password_events(database, user["id"])
    assert event == {"user": changed}
    assert PASSWORD not in json.dumps(event) and new not in json.dumps(event)

    # Wrong current passwords count like failed logins: the account locks for both.
    for _ in range(THROTTLE["lockout_threshold"]):
        async with http.post(url, json={"current_password": WRONG, "new_password": PASSWORD}) as resp:
            assert resp.status == 401
    async with http.post(url, json={"current_password": new, "new_password": PASSWORD}) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert (await verify(http, user["email"], new))[0] == 429


async def test_patch_with_a_password_also_publishes_password_changed(
    http: aiohttp.ClientSession, database: str
) -> None:
    user = await create(http)
    async with http.patch(f"/v1/users/{user['id']}", json={"password": "set by an administrator"}) as resp:
        assert resp.status == 200
        patched = await resp.json()
    assert await password_events(database, user["id"]) == [{"user": patched}]
    assert (await verify(http, user["nickname"], "set by an administrator"))[0] == 200


async def test_grpc_change_password(http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub) -> None:
    user = await create(http)
    new = "another long passphrase"

    def change(current: str, new_password: str) -> Any:
        return stub.ChangePassword(
            pb.ChangePasswordRequest(id=user["id"], current_password=current, new_password=new_password)
        )

    await grpc_error(change(WRONG, new), grpc.StatusCode.UNAUTHENTICATED)
    error = await grpc_error(change(PASSWORD, "short"), grpc.StatusCode.INVALID_ARGUMENT)
    [bad] = status_details(error)
    assert [v.field for v in bad.field_violations] == ["new_password"]
    changed = await change(PASSWORD, new)
    assert changed.version == user["version"] + 1 and changed.password == ""
    assert (await verify(http, user["email"], new))[0] == 200


LEGACY = {
    "argon2id, weaker costs": PasswordHasher(time_cost=1, memory_cost=256, type=Type.ID).hash(PASSWORD),
    "argon2i": PasswordHasher(time_cost=1, memory_cost=1024, type=Type.I).hash(PASSWORD),
    "argon2d": PasswordHasher(time_cost=1, memory_cost=1024, type=Type.D).hash(PASSWORD),
    "bcrypt": passlib_hash.bcrypt.using(rounds=4).hash(PASSWORD),
    "scrypt": passlib_hash.scrypt.using(rounds=10).hash(PASSWORD),
    "pbkdf2-sha256": passlib_hash.pbkdf2_sha256.using(rounds=1000).hash(PASSWORD),
}


async def stored_hash(database: str, user_id: str, replace_with: str | None = None) -> str:
    conn = await asyncpg.connect(database)
    try:
        if replace_with is not None:  # as a user brought in from another system would have it
            await conn.execute(
                "UPDATE users SET password_hash = $2 WHERE id = $1", uuid.UUID(user_id), replace_with
            )
        return str(await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", uuid.UUID(user_id)))
    finally:
        await conn.close()


@pytest.mark.parametrize("scheme", LEGACY)
async def test_an_older_hash_verifies_and_is_upgraded_to_current_argon2id(
    service: RunningService,
    http: aiohttp.ClientSession,
    stub: pb_grpc.UserServiceStub,
    database: str,
    scheme: str,
) -> None:
    user = await create(http)
    legacy = await stored_hash(database, user["id"], replace_with=LEGACY[scheme])
    assert (await verify(http, user["email"], WRONG))[0] == 401
    assert await stored_hash(database, user["id"]) == legacy  # a wrong password upgrades nothing
    found = await stub.VerifyPassword(pb.VerifyPasswordRequest(login=user["email"], password=PASSWORD))
    assert found.id == user["id"] and found.version == user["version"]  # an upgrade is not a change
    upgraded = await stored_hash(database, user["id"])
    assert upgraded.startswith("$argon2id$v=19$m=1024,t=1,p=1$")  # the service's (test) costs
    assert (await verify(http, user["nickname"], PASSWORD))[0] == 200
    assert await stored_hash(database, user["id"]) == upgraded  # current: left alone
    async with http.get(f"{service.management}/metrics") as resp:
        assert "userservice_password_rehashes_total{scheme=" in await resp.text()


async def test_new_passwords_follow_the_policy_on_every_path(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub
) -> None:
    async def refusal(resp: aiohttp.ClientResponse) -> dict[str, str]:
        assert resp.status == 400
        return {e["field"]: e["message"] for e in (await resp.json(content_type=None))["errors"]}

    body = new_user(password="qwerty123456")
    async with http.post("/v1/users", json=body) as resp:
        assert "most commonly used" in (await refusal(resp))["password"]
    body = new_user()
    body["password"] = f"I am {body['nickname']}, hello"
    async with http.post("/v1/users", json=body) as resp:
        message = (await refusal(resp))["password"]
        assert "nickname" in message and str(body["nickname"]) not in message
    error = await grpc_error(
        stub.CreateUser(pb.CreateUserRequest(user=pb.User(**{**new_user(), "password": "1q2w3e4r5t6y"}))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    [bad] = status_details(error)
    assert [v.field for v in bad.field_violations] == ["password"]

    user = await create(http, email=f"lady.{uuid.uuid4().hex[:8]}@example.com")
    local = user["email"].split("@")[0]
    async with http.patch(f"/v1/users/{user['id']}", json={"password": f"{local.upper()} forever"}) as resp:
        assert "email" in (await refusal(resp))["password"]
    # The rule holds for the nickname the update gives the user, too.
    patch = {"nickname": "ada-the-countess", "password": "Ada-The-Countess of Lovelace"}
    async with http.patch(f"/v1/users/{user['id']}", json=patch) as resp:
        assert "nickname" in (await refusal(resp))["password"]
    url = f"/v1/users/{user['id']}:changePassword"
    for new, rule in ((f"still {user['nickname']}", "nickname"), ("123qweasdzxc", "most commonly used")):
        async with http.post(url, json={"current_password": PASSWORD, "new_password": new}) as resp:
            assert rule in (await refusal(resp))["new_password"]
    assert (await verify(http, user["email"], PASSWORD))[0] == 200  # nothing changed


async def test_passwords_are_nfkc_normalised_before_hashing_and_verifying(
    http: aiohttp.ClientSession, database: str
) -> None:
    typed = "ｆｕｌｌｗｉｄｔｈ ﬁgures ①②"  # fullwidth letters, a ligature, circled digits
    plain = "fullwidth figures 12"
    user = await create(http, password=typed)
    for password in (typed, plain):
        assert (await verify(http, user["email"], password))[0] == 200
    assert (await verify(http, user["email"], "fullwidth figures 13"))[0] == 401

    # A hash made from the text as typed (another system's, or this one's before normalising) still verifies,
    # and is replaced by a hash of the normalised form.
    legacy = passlib_hash.pbkdf2_sha256.using(rounds=1000).hash(typed)
    await stored_hash(database, user["id"], replace_with=legacy)
    assert (await verify(http, user["email"], typed))[0] == 200
    upgraded = await stored_hash(database, user["id"])
    assert upgraded.startswith("$argon2id$") and PasswordHasher().verify(upgraded, plain)


async def test_a_deleted_user_never_authenticates_and_the_new_owner_of_its_login_does(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub
) -> None:
    gone = await create(http)
    async with http.delete(f"/v1/users/{gone['id']}") as resp:
        assert resp.status == 204
    for login in (gone["email"], gone["nickname"]):
        assert (await verify(http, login, PASSWORD))[0] == 401
        await grpc_error(
            stub.VerifyPassword(pb.VerifyPasswordRequest(login=login, password=PASSWORD)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    url = f"/v1/users/{gone['id']}:changePassword"
    async with http.post(
        url, json={"current_password": PASSWORD, "new_password": "a new long passphrase"}
    ) as r:
        assert r.status == 404

    # Someone else registers the freed login: only their password opens it.
    owner = await create(http, email=gone["email"], nickname=gone["nickname"], password="the new owner's own")
    for login in (gone["email"], gone["nickname"]):
        status, body, _ = await verify(http, login, "the new owner's own")
        assert status == 200 and body["id"] == owner["id"]
        assert (await verify(http, login, PASSWORD))[0] == 401


async def guess_at_once(
    rest: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub, login: str, passwords: list[str]
) -> list[int]:
    """The HTTP status of each guess, all sent at once, alternating REST and gRPC (gRPC codes as HTTP's)."""
    as_http = {"OK": 200, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429}

    async def guess(n: int, password: str) -> int:
        if n % 2:
            return (await verify(rest, login, password))[0]
        try:
            await stub.VerifyPassword(pb.VerifyPasswordRequest(login=login, password=password))
        except grpc.aio.AioRpcError as exc:
            return as_http[exc.code().name]
        return 200

    return list(await asyncio.gather(*(guess(n, p) for n, p in enumerate(passwords))))


async def test_concurrent_guesses_on_two_serve_processes_check_at_most_the_threshold(
    database: str, http: aiohttp.ClientSession
) -> None:
    """Counting and checking are one step: of 30 guesses at once against a threshold of 5, spread over two
    processes, exactly 5 are checked and the rest refused unchecked. With the right password among 40: at most 5
    are checked up to and including the success, which clears the count (a success ends the consecutive
    failures), and at most 5 after it, so at most 10, and at most 5 when the right one was refused unchecked."""
    env = {"LOGIN_LOCKOUT_THRESHOLD": "5", "LOGIN_CALLER_LOCKOUT_THRESHOLD": "100000"}
    replicas = [ServiceProcess(database, env=env).start(), ServiceProcess(database, env=env).start()]
    try:
        async with (
            aiohttp.ClientSession(base_url=replicas[0].http) as rest,
            grpc.aio.insecure_channel(replicas[1].grpc) as channel,
        ):
            stub = pb_grpc.UserServiceStub(channel)
            user = await create(http)
            answers = await guess_at_once(rest, stub, user["email"], [WRONG] * 30)
            assert sorted(answers) == [401] * 5 + [429] * 25, answers

            other = await create(http)
            answers = await guess_at_once(
                rest, stub, other["email"], [WRONG] * 20 + [PASSWORD] + [WRONG] * 19
            )
            checked = [a for a in answers if a != 429]
            assert set(checked) <= {200, 401}, answers
            assert len(checked) <= (10 if 200 in checked else 5), answers
    finally:
        for replica in replicas:
            replica.kill()


async def test_a_success_resets_the_callers_consecutive_count(postgres_dsn: str) -> None:
    dsn = await create_database(postgres_dsn)
    try:
        async with (
            in_process(dsn, lockout_threshold=0, caller_lockout_threshold=5, lockout_base=60.0) as running,
            aiohttp.ClientSession(base_url=running.http) as http,
        ):
            user = await create(http)
            for round_ in range(3):
                for n in range(4):
                    assert (await verify(http, f"nobody{round_}.{n}@example.com", WRONG))[0] == 401
                assert (await verify(http, user["email"], PASSWORD))[0] == 200
    finally:
        await drop_database(postgres_dsn, dsn)


async def test_of_concurrent_password_changes_with_one_current_password_one_wins(
    http: aiohttp.ClientSession,
) -> None:
    user = await create(http)
    url = f"/v1/users/{user['id']}:changePassword"

    async def change(n: int) -> int:
        body = {"current_password": PASSWORD, "new_password": f"new passphrase number {n}"}
        async with http.post(url, json=body) as resp:
            return resp.status

    answers = await asyncio.gather(*(change(n) for n in range(10)))
    # One wins; the others name a password that is no longer current (401), or wait behind the attempts the
    # lockout threshold lets through at once (429).
    assert answers.count(200) == 1 and set(answers) <= {200, 401, 429}, answers
    winner = answers.index(200)
    assert (await verify(http, user["email"], f"new passphrase number {winner}"))[0] == 200


async def test_a_cheap_imported_hash_is_refused_no_faster_than_an_unknown_login(
    service: RunningService, http: aiohttp.ClientSession, database: str
) -> None:
    """A wrong password against a hash cheaper than the current costs also spends the check an unknown login
    spends, so the time does not tell an imported login from no login."""
    user = await create(http)
    await stored_hash(database, user["id"], replace_with=LEGACY["pbkdf2-sha256"])

    async def hashes_spent() -> float:
        async with http.get(f"{service.management}/metrics") as resp:
            text = await resp.text()
        line = next(
            x for x in text.splitlines() if x.startswith("userservice_password_hash_duration_seconds_count")
        )
        return float(line.split()[-1])

    before = await hashes_spent()
    assert (await verify(http, user["email"], WRONG))[0] == 401
    assert await hashes_spent() == before + 2  # the cheap hash, then one at the current costs


async def test_guessable_passwords_off_the_list_are_refused_on_every_path(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub
) -> None:
    """The strength estimate stands beside the list: it finds sequences and words with digits the list misses."""
    weak = ("123456789012", "iloveyou1234")

    async def refused(resp: aiohttp.ClientResponse) -> dict[str, str]:
        assert resp.status == 400
        return {e["field"]: e["message"] for e in (await resp.json(content_type=None))["errors"]}

    for password in weak:
        async with http.post("/v1/users", json=new_user(password=password)) as resp:
            assert "too easy to guess" in (await refused(resp))["password"]
    body = {"requests": [{"user": new_user()}] + [{"user": new_user(password=p)} for p in weak]}
    async with http.post("/v1/users:batchCreate", json=body) as resp:
        assert set(await refused(resp)) == {"requests[1].user.password", "requests[2].user.password"}
    user = await create(http)
    async with http.patch(f"/v1/users/{user['id']}", json={"password": weak[0]}) as resp:
        assert "too easy to guess" in (await refused(resp))["password"]
    url = f"/v1/users/{user['id']}:changePassword"
    async with http.post(url, json={"current_password": PASSWORD, "new_password": weak[1]}) as resp:
        assert "too easy to guess" in (await refused(resp))["new_password"]
    error = await grpc_error(
        stub.CreateUser(pb.CreateUserRequest(user=pb.User(**{**new_user(), "password": weak[1]}))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    [bad] = status_details(error)
    assert [v.field for v in bad.field_violations] == ["password"]
    assert (await verify(http, user["email"], PASSWORD))[0] == 200  # nothing changed
