"""SCIM Users against the real service and PostgreSQL: every verb, the PATCH shapes identity providers send, ETags,
errors with their scimType, the model's rules, one event per write, and SCIM and the native API seeing one user."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from google.protobuf import field_mask_pb2

from tests.integration.service.scim.conftest import ERROR_SCHEMA, PATCH_SCHEMA, SCIM, scim_user
from tests.support.service import RunningService
from tests.support.users import new_user
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def send(
    scim: aiohttp.ClientSession, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any, Any]:
    data = None if body is None else json.dumps(body)
    async with scim.request(method, f"/scim/v2{path}", data=data, headers=headers) as resp:
        text = await resp.text()
        if text:
            assert resp.content_type == SCIM, (resp.status, resp.content_type, text)
        return resp.status, json.loads(text) if text else None, resp.headers


async def create(scim: aiohttp.ClientSession, **overrides: Any) -> dict[str, Any]:
    status, body, _ = await send(scim, "POST", "/Users", scim_user(tag(), **overrides))
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def assert_error(status: int, body: Any, expected: int, scim_type: str | None = None) -> None:
    assert status == expected, body
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == str(expected), body
    assert body.get("scimType") == scim_type, body


async def event_types(pool: asyncpg.Pool, user_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT type FROM user_events WHERE subject = $1 ORDER BY tx, seq", uuid.UUID(user_id)
    )
    return [row["type"].rsplit(".", 2)[1] for row in rows]


async def test_create_answers_201_with_location_etag_and_meta_and_the_native_api_sees_the_same_user(
    scim: aiohttp.ClientSession,
    http: aiohttp.ClientSession,
    stub: pb_grpc.UserServiceStub,
    pool: asyncpg.Pool,
) -> None:
    n = tag()
    status, user, headers = await send(scim, "POST", "/Users", scim_user(n))
    assert status == 201, user
    assert headers["Location"] == user["meta"]["location"]
    assert user["meta"]["location"].endswith(f"/scim/v2/Users/{user['id']}")
    assert headers["ETag"] == user["meta"]["version"] == '"v1"'
    assert user["meta"]["resourceType"] == "User" and user["meta"]["created"] == user["meta"]["lastModified"]
    assert user["userName"] == f"grace.{n}@example.com" and user["externalId"] == f"ext-{n}"
    assert user["emails"] == [{"value": f"grace.{n}@example.com", "type": "work"}]
    assert "password" not in user
    async with http.get(f"/v1/users/{user['id']}") as resp:
        native = await resp.json()
    assert resp.headers["ETag"] == headers["ETag"]
    assert native["nickname"] == user["userName"] and native["first_name"] == "Grace"
    assert native["active"] is True and native["external_id"] == f"ext-{n}" and native["country"] is None
    assert native["display_name"] == user["displayName"] == "Grace Hopper"
    reply = await stub.GetUser(pb.GetUserRequest(id=user["id"]))
    assert (reply.active, reply.external_id, reply.country, reply.etag) == (True, f"ext-{n}", "", '"v1"')
    assert reply.display_name == "Grace Hopper"
    assert await event_types(pool, user["id"]) == ["created"]


async def test_get_honours_if_none_match_and_unknown_ids_are_404(scim: aiohttp.ClientSession) -> None:
    user = await create(scim)
    status, body, headers = await send(scim, "GET", f"/Users/{user['id']}")
    assert status == 200 and body == user and headers["ETag"] == user["meta"]["version"]
    status, body, _ = await send(scim, "GET", f"/Users/{user['id']}", **{"If-None-Match": '"v1"'})
    assert status == 304 and body is None
    status, body, _ = await send(scim, "GET", f"/Users/{user['id']}", **{"If-None-Match": '"v9"'})
    assert status == 200
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        status, body, _ = await send(scim, "GET", f"/Users/{missing}")
        assert_error(status, body, 404)


async def test_put_replaces_every_attribute_and_a_stale_if_match_is_412(
    scim: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    user = await create(scim)
    n = tag()
    replacement = scim_user(n, active=False)
    del replacement["externalId"], replacement["displayName"]  # absent: cleared
    status, body, _ = await send(scim, "PUT", f"/Users/{user['id']}", replacement, **{"If-Match": '"v5"'})
    assert_error(status, body, 412)
    status, body, headers = await send(
        scim, "PUT", f"/Users/{user['id']}", replacement, **{"If-Match": '"v1"'}
    )
    assert status == 200, body
    assert (
        body["userName"] == f"grace.{n}@example.com"
        and body["active"] is False
        and "externalId" not in body
        and "displayName" not in body
    )
    assert headers["ETag"] == body["meta"]["version"] == '"v2"'
    status, body, _ = await send(scim, "PUT", f"/Users/{user['id']}", {"schemas": [], "userName": "x" + n})
    assert_error(status, body, 400, "invalidValue")
    assert "emails" in body["detail"] and "name.givenName" in body["detail"]
    assert await event_types(pool, user["id"]) == ["created", "updated"]


async def test_patch_as_the_rfc_writes_it(scim: aiohttp.ClientSession, pool: asyncpg.Pool) -> None:
    user = await create(scim)
    n = tag()
    status, body, headers = await send(
        scim,
        "PATCH",
        f"/Users/{user['id']}",
        patch_body(
            {"op": "replace", "path": "name.givenName", "value": "Amazing"},
            {"op": "add", "path": "name", "value": {"familyName": "Grace"}},
            {"op": "replace", "path": "userName", "value": f"amazing.{n}"},
            {"op": "remove", "path": "externalId"},
            {"op": "replace", "path": "displayName", "value": "Amazing Grace"},
            {
                "op": "replace",
                "path": "emails",
                "value": [{"value": f"amazing.{n}@example.com", "primary": True}],
            },
        ),
    )
    assert status == 200, body
    assert (
        body["name"] == {"givenName": "Amazing", "familyName": "Grace"} and body["userName"] == f"amazing.{n}"
    )
    assert "externalId" not in body and body["emails"][0]["value"] == f"amazing.{n}@example.com"
    assert body["displayName"] == "Amazing Grace"
    assert headers["ETag"] == body["meta"]["version"] == '"v2"'  # five operations, one change
    assert await event_types(pool, user["id"]) == ["created", "updated"]


async def test_patch_as_okta_sends_it(scim: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    user = await create(scim)
    status, body, _ = await send(
        scim, "PATCH", f"/Users/{user['id']}", patch_body({"op": "replace", "value": {"active": False}})
    )
    assert status == 200 and body["active"] is False, body
    async with http.get(f"/v1/users/{user['id']}") as resp:
        assert (await resp.json())["active"] is False
    status, body, _ = await send(
        scim, "PATCH", f"/Users/{user['id']}", patch_body({"op": "replace", "value": {"active": True}})
    )
    assert status == 200 and body["active"] is True and body["meta"]["version"] == '"v3"', body


async def test_patch_as_entra_sends_it(scim: aiohttp.ClientSession) -> None:
    user = await create(scim)
    n = tag()
    status, body, _ = await send(
        scim,
        "PATCH",
        f"/Users/{user['id']}",
        patch_body(
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": 'emails[type eq "work"].value', "value": f"entra.{n}@example.com"},
            {
                "op": "Replace",
                "path": "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
                "value": "Hop",
            },
            {"op": "Add", "value": {"urn:ietf:params:scim:schemas:core:2.0:User:externalId": f"oid-{n}"}},
            # Attributes of schemas the service does not serve are ignored in a path-less value, as on create.
            {"op": "Add", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"a": 1}}},
        ),
    )
    assert status == 200, body
    assert body["active"] is False and body["emails"][0]["value"] == f"entra.{n}@example.com"
    assert body["name"]["familyName"] == "Hop" and body["externalId"] == f"oid-{n}"


async def test_patch_errors_name_their_scim_type(scim: aiohttp.ClientSession) -> None:
    user = await create(scim)
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        (
            patch_body({"op": "replace", "path": 'emails[type eq "home"].value', "value": "a@b.example"}),
            400,
            "noTarget",
        ),
        (patch_body({"op": "remove"}), 400, "noTarget"),
        (patch_body({"op": "remove", "path": "userName"}), 400, "invalidValue"),
        (patch_body({"op": "replace", "path": "title", "value": "x"}), 400, "invalidPath"),
        (patch_body({"op": "replace", "path": "emails[", "value": "x"}), 400, "invalidPath"),
        (patch_body({"op": "replace", "path": "id", "value": str(uuid.uuid4())}), 400, "mutability"),
        (patch_body({"op": "replace", "path": "active", "value": "maybe"}), 400, "invalidValue"),
        (patch_body({"op": "move", "path": "active", "value": True}), 400, "invalidSyntax"),
        ({"Operations": [{"op": "replace", "path": "active", "value": False}]}, 400, "invalidSyntax"),
        (
            patch_body({"op": "replace", "path": "userName", "value": "no spaces allowed"}),
            400,
            "invalidValue",
        ),
    ]
    for body, expected, scim_type in cases:
        status, answer, _ = await send(scim, "PATCH", f"/Users/{user['id']}", body)
        assert_error(status, answer, expected, scim_type)
    status, answer, _ = await send(
        scim,
        "PATCH",
        f"/Users/{user['id']}",
        patch_body({"op": "replace", "path": "active", "value": False}),
        **{"If-Match": '"v7"'},
    )
    assert_error(status, answer, 412)
    status, answer, _ = await send(scim, "GET", f"/Users/{user['id']}")
    assert answer["meta"]["version"] == '"v1"'  # none of them changed anything


async def test_uniqueness_is_409_and_user_name_is_case_insensitive(scim: aiohttp.ClientSession) -> None:
    user = await create(scim)
    for overrides in (
        {"userName": user["userName"].upper()},
        {"emails": [{"value": user["emails"][0]["value"].upper(), "primary": True}]},
        {"externalId": user["externalId"]},
    ):
        body = scim_user(tag(), **overrides)
        status, answer, _ = await send(scim, "POST", "/Users", body)
        assert_error(status, answer, 409, "uniqueness")
    status, answer, _ = await send(
        scim, "POST", "/Users", scim_user(tag(), externalId=user["externalId"].upper())
    )
    assert status == 201, answer  # externalId is case-exact


async def test_bad_requests_are_scim_errors(scim: aiohttp.ClientSession, service: RunningService) -> None:
    async with aiohttp.ClientSession(base_url=service.http) as plain:
        async with plain.post(
            "/scim/v2/Users", data="{", headers={"Content-Type": "application/json"}
        ) as resp:
            body = await resp.json(content_type=None)
            assert resp.content_type == SCIM
            assert_error(resp.status, body, 400, "invalidSyntax")
        async with plain.post("/scim/v2/Users", data="{}", headers={"Content-Type": "text/plain"}) as resp:
            assert_error(resp.status, await resp.json(content_type=None), 415)
    for method, path in (("GET", "/Groups"), ("GET", "/Users/a/b"), ("DELETE", "/nothing/here")):
        status, body, _ = await send(scim, method, path)
        assert_error(status, body, 404)
    for path in ("/ServiceProviderConfig", "/Schemas", "/ResourceTypes/User"):
        status, body, _ = await send(scim, "POST", path, {})
        assert_error(status, body, 405)
    status, body, _ = await send(scim, "GET", "/Schemas/urn:example:nothing")
    assert_error(status, body, 404)
    status, body, _ = await send(scim, "POST", "/Users", scim_user(tag(), name={"givenName": "1234"}))
    assert_error(status, body, 400, "invalidValue")
    assert body["detail"].startswith("name.givenName: ") or "name.familyName" in body["detail"]


async def test_a_user_without_a_password_is_refused_like_a_wrong_password_and_counted(
    scim: aiohttp.ClientSession, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    user = await create(scim)
    email = user["emails"][0]["value"]
    refusals = []
    for login in (email, f"nobody.{tag()}@example.com"):
        async with http.post(
            "/v1/users:verifyPassword", json={"login": login, "password": "correct horse battery staple"}
        ) as resp:
            refusals.append((resp.status, (await resp.json())["detail"]))
    assert refusals[0] == refusals[1] and refusals[0][0] == 401
    failures = await pool.fetchval(
        "SELECT failures FROM credential_failures WHERE scope = 'account' AND subject = $1", user["id"]
    )
    assert failures == 1


async def test_a_deactivated_user_is_readable_cannot_verify_and_is_restored(
    scim: aiohttp.ClientSession, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    password = "correct horse battery staple ruler"
    user = await create(scim, password=password)
    email = user["emails"][0]["value"]
    verify = {"login": email, "password": password}
    async with http.post("/v1/users:verifyPassword", json=verify) as resp:
        assert resp.status == 200
    status, body, _ = await send(
        scim, "PATCH", f"/Users/{user['id']}", patch_body({"op": "replace", "path": "active", "value": False})
    )
    assert status == 200 and body["active"] is False
    async with http.post("/v1/users:verifyPassword", json=verify) as resp:
        assert resp.status == 401
    status, body, _ = await send(scim, "GET", f"/Users/{user['id']}")
    assert status == 200 and body["active"] is False
    async with http.patch(
        f"/v1/users/{user['id']}",
        json={"active": True},
        headers={"Content-Type": "application/merge-patch+json"},
    ) as resp:
        assert resp.status == 200 and (await resp.json())["active"] is True
    async with http.post("/v1/users:verifyPassword", json=verify) as resp:
        assert resp.status == 200
    events = await pool.fetch(
        "SELECT data FROM user_events WHERE subject = $1 ORDER BY tx, seq", uuid.UUID(user["id"])
    )
    assert [json.loads(e["data"])["user"]["active"] for e in events] == [True, False, True]


async def test_delete_is_the_native_soft_delete(
    scim: aiohttp.ClientSession, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    user = await create(scim)
    status, body, _ = await send(scim, "DELETE", f"/Users/{user['id']}", **{"If-Match": '"v4"'})
    assert_error(status, body, 412)
    status, body, _ = await send(scim, "DELETE", f"/Users/{user['id']}")
    assert status == 204 and body is None
    status, body, _ = await send(scim, "GET", f"/Users/{user['id']}")
    assert_error(status, body, 404)
    status, body, _ = await send(scim, "DELETE", f"/Users/{user['id']}")
    assert_error(status, body, 404)
    status, body, _ = await send(scim, "GET", f'/Users?filter=id eq "{user["id"]}"')
    assert body["totalResults"] == 0
    async with http.post(f"/v1/users/{user['id']}:undelete") as resp:
        assert resp.status == 200
    status, body, _ = await send(scim, "GET", f"/Users/{user['id']}")
    assert status == 200 and body["meta"]["version"] == '"v3"'
    async with http.post(f"/v1/users/{user['id']}:erase") as resp:
        assert resp.status == 204
    status, body, _ = await send(scim, "GET", f"/Users/{user['id']}")
    assert_error(status, body, 404)
    assert await event_types(pool, user["id"]) == ["created", "deleted", "undeleted", "erased"]


async def test_grpc_sets_and_clears_the_provisioning_fields(stub: pb_grpc.UserServiceStub) -> None:
    n = tag()
    created = await stub.CreateUser(
        pb.CreateUserRequest(
            user=pb.User(
                first_name="Ada",
                last_name="Lovelace",
                nickname=f"ada.{n}@example.com",
                email=f"ada.{n}@example.com",
                country="GB",
                password="correct horse battery staple",
                active=False,
                external_id=f"ext-{n}",
                display_name="Ada",
            )
        )
    )
    assert (created.active, created.external_id, created.display_name) == (False, f"ext-{n}", "Ada")
    updated = await stub.UpdateUser(
        pb.UpdateUserRequest(
            user=pb.User(id=created.id, active=True),
            update_mask=field_mask_pb2.FieldMask(paths=["active", "external_id", "display_name"]),
        )
    )
    assert (updated.active, updated.external_id, updated.display_name, updated.version) == (True, "", "", 2)
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # password and country stay required natively
        await stub.CreateUser(
            pb.CreateUserRequest(
                user=pb.User(first_name="Ada", last_name="L", nickname=f"a{n}", email=f"x{n}@example.com")
            )
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "password" in (refused.value.details() or "") and "country" in (refused.value.details() or "")


async def test_rest_sets_and_clears_the_provisioning_fields(http: aiohttp.ClientSession) -> None:
    n = tag()
    body = new_user(external_id=f"ext-{n}", display_name="Ada L.", active=False)
    async with http.post("/v1/users", json=body) as resp:
        created = await resp.json()
        assert resp.status == 201, created
    assert (created["external_id"], created["display_name"], created["active"]) == (
        f"ext-{n}",
        "Ada L.",
        False,
    )
    async with http.post("/v1/users", json=new_user(external_id=f"ext-{n}")) as resp:
        problem = await resp.json()
        assert resp.status == 409 and problem["errors"][0]["field"] == "external_id", problem
    merge = {"Content-Type": "application/merge-patch+json"}
    async with http.patch(
        f"/v1/users/{created['id']}", json={"external_id": None, "display_name": None}, headers=merge
    ) as resp:
        cleared = await resp.json()
        assert resp.status == 200 and cleared["external_id"] is None and cleared["display_name"] is None
    async with http.patch(f"/v1/users/{created['id']}", json={"country": None}, headers=merge) as resp:
        assert resp.status == 400  # only the provisioning fields may be cleared
