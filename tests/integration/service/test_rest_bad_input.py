"""Every kind of bad input gets a specific problem+json 4xx, never a 500, and nothing is written."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from tests.support.users import new_user


@pytest.fixture
async def row_counts(database: str) -> AsyncIterator[None]:
    """Fails the test if it changed the number of users, events or idempotency keys."""

    async def counts() -> tuple[int, ...]:
        conn = await asyncpg.connect(database)
        try:
            return tuple(
                [
                    await conn.fetchval(f"SELECT count(*) FROM {t}")
                    for t in ("users", "user_events", "idempotency_keys")
                ]
            )
        finally:
            await conn.close()

    before = await counts()
    yield
    assert await counts() == before, "bad input left something behind"


async def expect_problem(
    resp: aiohttp.ClientResponse, status: int, slug: str, fields: set[str] | None = None
) -> dict:  # type: ignore[type-arg]
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert (
        problem["status"] == status
        and problem["type"].endswith("/" + slug)
        and problem["title"]
        and problem["detail"]
    )
    if fields is not None:
        assert {e["field"] for e in problem["errors"]} == fields
    return problem  # type: ignore[no-any-return]


BAD_BODIES = [
    ({**new_user(), "nickname": "a"}, {"nickname"}),
    ({**new_user(), "nickname": "has space"}, {"nickname"}),
    ({**new_user(), "email": "not-an-email"}, {"email"}),
    ({**new_user(), "email": "a@b"}, {"email"}),
    ({**new_user(), "country": "UK"}, {"country"}),
    ({**new_user(), "country": "XX"}, {"country"}),
    ({**new_user(), "password": "short"}, {"password"}),
    ({**new_user(), "password": " " * 20}, {"password"}),
    ({**new_user(), "first_name": ""}, {"first_name"}),
    ({**new_user(), "first_name": "x" * 101}, {"first_name"}),
    ({**new_user(), "last_name": "Bad\u0000Name"}, {"last_name"}),
    ({**new_user(), "first_name": 42}, {"first_name"}),
    ({**new_user(), "id": str(uuid.uuid4())}, {"id"}),
    ({**new_user(), "admin": True}, {"admin"}),
    ({k: v for k, v in new_user().items() if k != "email"}, {"email"}),
    ({}, {"first_name", "last_name", "nickname", "email", "country", "password"}),
]


@pytest.mark.parametrize(("body", "fields"), BAD_BODIES)
async def test_invalid_fields_are_all_reported(
    http: aiohttp.ClientSession, row_counts: None, body: dict, fields: set[str]
) -> None:  # type: ignore[type-arg]
    async with http.post("/v1/users", json=body) as resp:
        problem = await expect_problem(resp, 400, "invalid-argument", fields)
    assert "correct horse" not in str(problem)  # never echo a password


async def test_uk_hints_at_gb(http: aiohttp.ClientSession, row_counts: None) -> None:
    async with http.post("/v1/users", json=new_user(country="UK")) as resp:
        problem = await expect_problem(resp, 400, "invalid-argument", {"country"})
    assert "did you mean GB" in problem["errors"][0]["message"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"first_name": ', "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"\xff\xfe", "UTF-8"),
        (b"", "not valid JSON"),
    ],
)
async def test_malformed_json(
    http: aiohttp.ClientSession, row_counts: None, data: bytes, expected: str
) -> None:
    async with http.post("/v1/users", data=data, headers={"Content-Type": "application/json"}) as resp:
        problem = await expect_problem(resp, 400, "invalid-argument", {"body"})
    assert expected in problem["detail"]


async def test_wrong_content_type_is_415(http: aiohttp.ClientSession, row_counts: None) -> None:
    async with http.post(
        "/v1/users", data="first_name=Ada", headers={"Content-Type": "application/x-www-form-urlencoded"}
    ) as resp:
        problem = await expect_problem(resp, 415, "unsupported-media-type")
    assert "application/json" in problem["detail"]
    async with http.post("/v1/users", data=b"{}") as resp:  # no content type at all
        await expect_problem(resp, 415, "unsupported-media-type")


async def test_oversized_body_is_413(http: aiohttp.ClientSession, row_counts: None) -> None:
    body = new_user(first_name="A" * 100_000)
    async with http.post("/v1/users", json=body) as resp:
        await expect_problem(resp, 413, "request-entity-too-large")


async def test_patch_bad_input(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/users", json=new_user()) as resp:
        user = await resp.json()
    url = f"/v1/users/{user['id']}"
    async with http.patch(url, data=b"{", headers={"Content-Type": "application/merge-patch+json"}) as resp:
        await expect_problem(resp, 400, "invalid-argument", {"body"})
    async with http.patch(url, data=b"{}", headers={"Content-Type": "text/plain"}) as resp:
        await expect_problem(resp, 415, "unsupported-media-type")
    async with http.patch(url, json={"nickname": "!"}) as resp:
        await expect_problem(resp, 400, "invalid-argument", {"nickname"})
    async with http.patch(f"/v1/users/{uuid.uuid4()}", json={"first_name": "A"}) as resp:
        await expect_problem(resp, 404, "not-found")
    async with http.get(url) as resp:
        assert (await resp.json())["version"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=0", "page_size"),
        ("page_size=1001", "page_size"),
        ("page_size=ten", "page_size"),
        ("page_token=garbage", "page_token"),
        ("country=Narnia", "country"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2024-01-01T00:00:00", "created_before"),
        ("sort=name", "sort"),
        ("country=GB&country=FR", "country"),
    ],
)
async def test_list_bad_query(http: aiohttp.ClientSession, query: str, field: str) -> None:
    async with http.get(f"/v1/users?{query}") as resp:
        await expect_problem(resp, 400, "invalid-argument", {field})


async def test_unknown_route_and_method(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/nothing") as resp:
        await expect_problem(resp, 404, "not-found")
    async with http.put("/v1/users") as resp:
        await expect_problem(resp, 405, "method-not-allowed")
        assert "POST" in resp.headers["Allow"]


async def test_bad_event_cursor(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/events", headers={"Last-Event-ID": "nonsense"}) as resp:
        await expect_problem(resp, 400, "invalid-argument", {"Last-Event-ID"})
