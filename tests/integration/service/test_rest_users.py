"""REST CRUD, conditional requests, idempotency and listing against a real server and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import asyncpg

from tests.support.users import new_user


async def create(http: aiohttp.ClientSession, **fields: object) -> dict[str, object]:
    async with http.post("/v1/users", json=new_user(**fields)) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def test_create_returns_location_etag_and_no_password(http: aiohttp.ClientSession) -> None:
    body = new_user(country="gb", first_name="  Ada ")
    async with http.post("/v1/users", json=body) as resp:
        assert resp.status == 201
        user = await resp.json()
        assert resp.headers["Location"] == f"/v1/users/{user['id']}"
        assert resp.headers["ETag"] == user["etag"] == '"v1"'
        assert resp.headers["X-Request-ID"]
    assert "password" not in user and "password_hash" not in user
    assert user["country"] == "GB" and user["first_name"] == "Ada" and user["version"] == 1
    async with http.get(f"/v1/users/{user['id']}") as resp:
        assert resp.status == 200
        assert await resp.json() == user


async def test_password_is_stored_as_argon2id(http: aiohttp.ClientSession, database: str) -> None:
    user = await create(http, password="a very secret passphrase")
    conn = await asyncpg.connect(database)
    try:
        stored = await conn.fetchval(
            "SELECT password_hash FROM users WHERE id = $1", uuid.UUID(str(user["id"]))
        )
        events = await conn.fetchval(
            "SELECT data::text FROM user_events WHERE subject = $1", uuid.UUID(str(user["id"]))
        )
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$")
    assert "a very secret passphrase" not in stored and "secret" not in events and "password" not in events


async def test_get_unknown_and_malformed_ids(http: aiohttp.ClientSession) -> None:
    async with http.get(f"/v1/users/{uuid.uuid4()}") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["type"].endswith("/not-found")
    async with http.get("/v1/users/not-a-uuid") as resp:
        assert resp.status == 400
        problem = await resp.json()
        assert problem["errors"] == [{"field": "id", "message": problem["errors"][0]["message"]}]


async def test_if_none_match_gives_304(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    async with http.get(f"/v1/users/{user['id']}", headers={"If-None-Match": str(user["etag"])}) as resp:
        assert resp.status == 304


async def test_patch_merge_patch_and_etag(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    url = f"/v1/users/{user['id']}"
    headers = {"Content-Type": "application/merge-patch+json", "If-Match": str(user["etag"])}
    async with http.patch(url, data='{"first_name": "Augusta", "country": "fr"}', headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        patched = await resp.json()
    assert (
        patched["first_name"] == "Augusta"
        and patched["country"] == "FR"
        and patched["last_name"] == "Lovelace"
    )
    assert patched["version"] == 2 and resp.headers["ETag"] == '"v2"'
    assert patched["created_at"] == user["created_at"] and patched["updated_at"] > user["updated_at"]
    # The old etag is stale now.
    async with http.patch(url, data='{"first_name": "X"}', headers=headers) as resp:
        assert resp.status == 412
        assert "v2" in (await resp.json())["detail"]
    # A patch that changes nothing writes nothing.
    async with http.patch(url, json={"first_name": "Augusta"}) as resp:
        assert (await resp.json())["version"] == 2


async def test_patch_refuses_null_read_only_and_unknown_fields(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    async with http.patch(f"/v1/users/{user['id']}", json={"email": None, "id": "x", "age": 3}) as resp:
        assert resp.status == 400
        fields = {e["field"] for e in (await resp.json())["errors"]}
    assert fields == {"email", "id", "age"}
    async with http.get(f"/v1/users/{user['id']}") as resp:
        assert (await resp.json())["version"] == 1


async def test_concurrent_patches_with_same_if_match_exactly_one_wins(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    headers = {"If-Match": str(user["etag"])}

    async def patch(i: int) -> int:
        async with http.patch(
            f"/v1/users/{user['id']}", json={"first_name": f"Name{chr(65 + i)}"}, headers=headers
        ) as resp:
            return resp.status

    statuses = await asyncio.gather(*(patch(i) for i in range(8)))
    assert sorted(statuses) == [200] + [412] * 7
    async with http.get(f"/v1/users/{user['id']}") as resp:
        assert (await resp.json())["version"] == 2


async def test_delete_then_404_and_if_match(http: aiohttp.ClientSession) -> None:
    user = await create(http)
    url = f"/v1/users/{user['id']}"
    async with http.delete(url, headers={"If-Match": '"v7"'}) as resp:
        assert resp.status == 412
    async with http.delete(url, headers={"If-Match": str(user["etag"])}) as resp:
        assert resp.status == 204
    async with http.get(url) as resp:
        assert resp.status == 404
    async with http.delete(url) as resp:
        assert resp.status == 404


async def test_unique_nickname_and_case_insensitive_email(http: aiohttp.ClientSession) -> None:
    first = await create(http)
    async with http.post("/v1/users", json=new_user(nickname=first["nickname"])) as resp:
        assert resp.status == 409
        assert (await resp.json())["errors"][0]["field"] == "nickname"
    async with http.post("/v1/users", json=new_user(email=str(first["email"]).upper())) as resp:
        assert resp.status == 409
        assert (await resp.json())["errors"][0]["field"] == "email"
    other = await create(http)
    async with http.patch(f"/v1/users/{other['id']}", json={"email": first["email"]}) as resp:
        assert resp.status == 409


class TestIdempotency:
    async def test_same_key_same_body_replays_original(self, http: aiohttp.ClientSession) -> None:
        body, key = new_user(), str(uuid.uuid4())
        async with http.post("/v1/users", json=body, headers={"Idempotency-Key": key}) as resp:
            assert resp.status == 201
            first, location = await resp.json(), resp.headers["Location"]
        # Even after the user changed, the replay returns the original response.
        async with http.patch(location, json={"first_name": "Changed"}) as resp:
            assert resp.status == 200
        async with http.post("/v1/users", json=body, headers={"Idempotency-Key": key}) as resp:
            assert resp.status == 201
            assert await resp.json() == first
            assert resp.headers["Location"] == location and resp.headers["Idempotent-Replayed"] == "true"

    async def test_same_key_different_body_is_422(self, http: aiohttp.ClientSession) -> None:
        body, key = new_user(), str(uuid.uuid4())
        async with http.post("/v1/users", json=body, headers={"Idempotency-Key": key}) as resp:
            assert resp.status == 201
        for changed in ({**body, "first_name": "Other"}, {**body, "password": "another long password"}):
            async with http.post("/v1/users", json=changed, headers={"Idempotency-Key": key}) as resp:
                assert resp.status == 422
                assert resp.content_type == "application/problem+json"

    async def test_concurrent_requests_with_one_key_create_one_user(
        self, http: aiohttp.ClientSession, database: str
    ) -> None:
        body, key = new_user(), str(uuid.uuid4())

        async def post() -> tuple[int, str]:
            async with http.post("/v1/users", json=body, headers={"Idempotency-Key": key}) as resp:
                return resp.status, (await resp.json())["id"]

        results = await asyncio.gather(*(post() for _ in range(10)))
        assert {status for status, _ in results} == {201}
        assert len({user_id for _, user_id in results}) == 1
        conn = await asyncpg.connect(database)
        try:
            assert (
                await conn.fetchval("SELECT count(*) FROM users WHERE nickname = $1", body["nickname"]) == 1
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM user_events WHERE subject = $1", uuid.UUID(results[0][1])
                )
                == 1
            )
        finally:
            await conn.close()

    async def test_failed_create_does_not_burn_the_key(self, http: aiohttp.ClientSession) -> None:
        taken = await create(http)
        key = str(uuid.uuid4())
        async with http.post(
            "/v1/users", json=new_user(nickname=taken["nickname"]), headers={"Idempotency-Key": key}
        ) as resp:
            assert resp.status == 409
        async with http.post("/v1/users", json=new_user(), headers={"Idempotency-Key": key}) as resp:
            assert resp.status == 201

    async def test_expired_key_is_forgotten(self, http: aiohttp.ClientSession, database: str) -> None:
        body, key = new_user(), str(uuid.uuid4())
        async with http.post("/v1/users", json=body, headers={"Idempotency-Key": key}) as resp:
            assert resp.status == 201
        conn = await asyncpg.connect(database)
        try:
            await conn.execute(
                "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1", key
            )
        finally:
            await conn.close()
        async with http.post("/v1/users", json=new_user(), headers={"Idempotency-Key": key}) as resp:
            assert resp.status == 201  # a different body is fine once the key has expired

    async def test_invalid_key(self, http: aiohttp.ClientSession) -> None:
        async with http.post("/v1/users", json=new_user(), headers={"Idempotency-Key": "x" * 256}) as resp:
            assert resp.status == 400
            assert (await resp.json())["errors"][0]["field"] == "Idempotency-Key"
