"""Hostile SCIM input: any JSON where a user, a PATCH operation, a path, a filter or a paging parameter goes is a
SCIM error (4xx, the Error schema) or a success, never a server error."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.service.scim.conftest import ERROR_SCHEMA, PATCH_SCHEMA, SCIM, scim_user
from tests.support.hostile import (
    any_text,
    hostile_json_values,
    hostile_text,
    json_text,
    nasty_text,
    raw_json_bodies,
)

HOSTILE = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
ATTRIBUTES = [
    "userName",
    "name",
    "name.givenName",
    "displayName",
    "emails",
    "active",
    "externalId",
    "password",
]
PATHS = st.one_of(
    st.sampled_from(
        [
            *ATTRIBUTES,
            'emails[type eq "work"].value',
            "emails[value co 1].type",
            "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
            "urn:x:y:title",
            "meta.created",
            "emails[not (primary eq true)]",
        ]
    ),
    hostile_text,
)


@pytest.fixture(scope="module")
async def user(scim: aiohttp.ClientSession) -> dict[str, Any]:
    async with scim.post("/scim/v2/Users", data=json.dumps(scim_user("hostile"))) as resp:
        assert resp.status == 201
        return await resp.json(content_type=None)  # type: ignore[no-any-return]


async def assert_not_a_server_error(resp: aiohttp.ClientResponse) -> None:
    text = await resp.text(errors="replace")
    assert resp.status < 500, text
    if resp.status >= 400:
        assert resp.content_type == SCIM, text
        body = json.loads(text)
        assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == str(resp.status), text


@HOSTILE
@given(attribute=st.sampled_from(ATTRIBUTES), value=hostile_json_values)
async def test_create_with_one_hostile_attribute(
    scim: aiohttp.ClientSession, attribute: str, value: object
) -> None:
    body = {**scim_user("x"), attribute: value}
    async with scim.post("/scim/v2/Users", data=json_text(body)) as resp:
        await assert_not_a_server_error(resp)


@HOSTILE
@given(
    op=st.one_of(st.sampled_from(["add", "Replace", "remove"]), hostile_json_values),
    path=st.one_of(st.none(), PATHS, hostile_json_values),
    value=hostile_json_values,
)
async def test_hostile_patch_operations(
    scim: aiohttp.ClientSession, user: dict[str, Any], op: object, path: object, value: object
) -> None:
    operation = {"op": op, "value": value} | ({} if path is None else {"path": path})
    body = {"schemas": [PATCH_SCHEMA], "Operations": [operation]}
    async with scim.patch(f"/scim/v2/Users/{user['id']}", data=json_text(body)) as resp:
        await assert_not_a_server_error(resp)


@HOSTILE
@given(
    body=st.one_of(raw_json_bodies, hostile_json_values.map(json_text)),
    method_path=st.sampled_from(
        [("POST", "/Users"), ("PUT", "/Users/{id}"), ("PATCH", "/Users/{id}"), ("POST", "/.search")]
    ),
)
async def test_hostile_documents(
    scim: aiohttp.ClientSession, user: dict[str, Any], body: bytes, method_path: tuple[str, str]
) -> None:
    method, path = method_path
    async with scim.request(method, "/scim/v2" + path.format(id=user["id"]), data=body) as resp:
        await assert_not_a_server_error(resp)


@HOSTILE
@given(
    name=st.sampled_from(["filter", "startIndex", "count", "attributes", "excludedAttributes"]),
    # Short texts: a request line past the HTTP parser's limit is refused before any route (a problem+json 400).
    value=st.one_of(any_text, nasty_text),
)
async def test_hostile_query_parameters(scim: aiohttp.ClientSession, name: str, value: str) -> None:
    async with scim.get("/scim/v2/Users", params={name: value.encode("utf-8", "replace").decode()}) as resp:
        await assert_not_a_server_error(resp)
