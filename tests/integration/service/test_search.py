"""Prefix search on email, nickname and last name, and newest-first order, over REST and gRPC: combinable with the
other filters and keyset pagination; page tokens stay bound to the filters and the order."""

from __future__ import annotations

import uuid

import aiohttp
import grpc
import pytest

from tests.support.users import new_user
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


async def family(http: aiohttp.ClientSession, size: int = 5) -> tuple[str, list[dict[str, object]]]:
    """Users sharing a unique tag in their email, nickname and last name, in creation order."""
    tag = "q" + uuid.uuid4().hex[:8]
    users = []
    for i in range(size):
        body = new_user(
            email=f"{tag.upper()}.{i}@Example.com",
            nickname=f"{tag}_{i}",
            last_name=f"{tag.title()}son",
            country="IS" if i % 2 else "FI",
        )
        async with http.post("/v1/users", json=body) as resp:
            assert resp.status == 201, await resp.text()
            users.append(await resp.json())
    return tag, users


async def ids(http: aiohttp.ClientSession, **params: str) -> list[object]:
    async with http.get("/v1/users", params=params) as resp:
        assert resp.status == 200, await resp.text()
        return [u["id"] for u in (await resp.json())["users"]]


async def test_rest_prefixes_and_their_case_rules(http: aiohttp.ClientSession) -> None:
    tag, users = await family(http)
    every = [u["id"] for u in users]
    assert await ids(http, email_prefix=tag) == every  # emails compare case-insensitively
    assert await ids(http, last_name_prefix=tag.upper()) == every
    assert await ids(http, nickname_prefix=f"{tag}_") == every
    assert await ids(http, nickname_prefix=tag.upper()) == []  # nicknames compare exactly
    assert await ids(http, nickname_prefix=f"{tag}_3") == [users[3]["id"]]
    assert await ids(http, email_prefix=f"{tag}.1@") == [users[1]["id"]]
    # LIKE's wildcards are plain characters here.
    assert await ids(http, email_prefix=f"{tag}%") == []
    assert await ids(http, last_name_prefix="%") == []
    assert await ids(http, email_prefix=tag, country="IS") == [users[1]["id"], users[3]["id"]]


async def test_rest_newest_first_pages_without_repeats_under_inserts(http: aiohttp.ClientSession) -> None:
    tag, users = await family(http)
    seen: list[object] = []
    params = {"last_name_prefix": tag, "order_by": "created_at desc", "page_size": "2"}
    token = ""
    while True:
        async with http.get("/v1/users", params={**params, "page_token": token} if token else params) as resp:
            page = await resp.json()
        seen.extend(u["id"] for u in page["users"])
        if not seen[2:]:  # a newer user appears while paging: before the first page, so never on a later one
            async with http.post("/v1/users", json=new_user(last_name=f"{tag.title()}sen")) as resp:
                assert resp.status == 201
        token = page["next_page_token"]
        if not token:
            break
    assert seen == [u["id"] for u in reversed(users)]


async def test_rest_tokens_are_bound_to_prefix_and_order(http: aiohttp.ClientSession) -> None:
    tag, _ = await family(http, 3)
    params = {"nickname_prefix": tag, "page_size": "1"}
    async with http.get("/v1/users", params=params) as resp:
        token = (await resp.json())["next_page_token"]
    for changed in ({"order_by": "created_at desc"}, {"nickname_prefix": f"{tag}_"}):
        async with http.get("/v1/users", params={**params, **changed, "page_token": token}) as resp:
            assert resp.status == 400
            assert "different filters" in (await resp.json())["detail"]
    async with http.get(
        "/v1/users", params={**params, "order_by": "created_at asc", "page_token": token}
    ) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("order_by", "email"),
        ("order_by", "created_at up"),
        ("nickname_prefix", "a b"),
        ("email_prefix", ""),
        ("last_name_prefix", "\u200b"),
        ("last_name_prefix", "x" * 101),
    ],
)
async def test_rest_bad_search_parameters_are_400(http: aiohttp.ClientSession, name: str, value: str) -> None:
    async with http.get("/v1/users", params={name: value}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["field"] == name


async def test_grpc_prefix_terms_and_order_by(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub
) -> None:
    tag, users = await family(http)
    every = [str(u["id"]) for u in users]

    async def listed(filter_: str, order_by: str = "", page_size: int = 0) -> list[str]:
        request = pb.ListUsersRequest(filter=filter_, order_by=order_by, page_size=page_size)
        return [u.id for u in (await stub.ListUsers(request)).users]

    assert await listed(f'email = "{tag}*"') == every
    assert await listed(f'last_name = "{tag.upper()}*" AND country = "FI"') == every[0::2]
    assert await listed(f'nickname = "{tag}_*"', "created_at desc") == every[::-1]
    first = await stub.ListUsers(
        pb.ListUsersRequest(filter=f'email = "{tag}*"', order_by="created_at desc", page_size=3)
    )
    rest = await stub.ListUsers(
        pb.ListUsersRequest(
            filter=f'email = "{tag}*"',
            order_by="created_at desc",
            page_size=3,
            page_token=first.next_page_token,
        )
    )
    assert [u.id for u in [*first.users, *rest.users]] == every[::-1]
    for bad in (
        {"order_by": "nickname"},
        {"filter": 'last_name = "Lovelace"'},
        {"filter": 'nickname = "a b*"'},
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListUsers(pb.ListUsersRequest(**bad))  # type: ignore[arg-type]
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
