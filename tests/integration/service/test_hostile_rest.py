"""Hostile JSON, headers and raw HTTP over every REST endpoint and field: always a 4xx problem+json (or a
success), never a 500, and malformed HTTP never floods the log with tracebacks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile import hostile_json_values, json_text, raw_json_bodies, salted
from tests.support.service import RunningService
from tests.support.users import new_user
from userservice.api.http import LIST_PARAMS
from userservice.domain.fields import FIELDS_BY_NAME

HOSTILE = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
FIELD_NAMES = st.sampled_from(sorted(FIELDS_BY_NAME))
# Header values as raw bytes: aiohttp's client would refuse or re-encode the interesting ones.
header_values = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.builds(
        lambda piece, n: piece * n,
        st.sampled_from([b",", b'"v1",', b'W/"', b"\xff", b" "]),
        st.integers(1, 3000),
    ),
)


async def assert_not_a_server_error(resp: aiohttp.ClientResponse) -> None:
    text = await resp.text(errors="replace")
    assert resp.status < 500, text
    if resp.status >= 400:
        assert resp.content_type == "application/problem+json", text
        assert (await resp.json())["status"] == resp.status


@pytest.fixture(scope="module")
async def user(http: aiohttp.ClientSession) -> dict[str, object]:
    async with http.post("/v1/users", json=new_user()) as resp:
        assert resp.status == 201
        return await resp.json()  # type: ignore[no-any-return]


# Fixed valid values to salt (a generator must not depend on new_user()'s counter).
TEMPLATE = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "nickname": "ada_lovelace",
    "email": "ada.lovelace@example.com",
    "country": "GB",
    "password": "correct horse battery staple",
    "external_id": "00u1abcd2EFGH3ijk4x7",
    "display_name": "Ada Lovelace",
}


def hostile_field_values(field: str) -> st.SearchStrategy[object]:
    if field == "active":  # the one boolean field: every JSON value is hostile but true and false
        return st.one_of(hostile_json_values, st.booleans())
    return st.one_of(hostile_json_values, salted(TEMPLATE[field]))


@HOSTILE
@given(data=st.data())
async def test_create_with_one_hostile_field(http: aiohttp.ClientSession, data: st.DataObject) -> None:
    field = data.draw(FIELD_NAMES)
    body = json_text({**new_user(), field: data.draw(hostile_field_values(field))})
    async with http.post("/v1/users", data=body, headers={"Content-Type": "application/json"}) as resp:
        await assert_not_a_server_error(resp)


@HOSTILE
@given(data=st.data())
async def test_patch_with_one_hostile_field(
    http: aiohttp.ClientSession, user: dict[str, object], data: st.DataObject
) -> None:
    field = data.draw(FIELD_NAMES)
    body = json_text({field: data.draw(hostile_field_values(field))})
    headers = {"Content-Type": "application/merge-patch+json"}
    async with http.patch(f"/v1/users/{user['id']}", data=body, headers=headers) as resp:
        await assert_not_a_server_error(resp)


@HOSTILE
@given(
    body=st.one_of(raw_json_bodies, hostile_json_values.map(json_text)),
    method=st.sampled_from(["POST", "PATCH"]),
)
async def test_hostile_documents(
    http: aiohttp.ClientSession, user: dict[str, object], body: bytes, method: str
) -> None:
    url = "/v1/users" if method == "POST" else f"/v1/users/{user['id']}"
    async with http.request(method, url, data=body, headers={"Content-Type": "application/json"}) as resp:
        await assert_not_a_server_error(resp)


@HOSTILE
@given(
    header=st.sampled_from(["If-Match", "If-None-Match", "Idempotency-Key", "X-Request-ID", "Content-Type"]),
    value=header_values,
    path=st.sampled_from(["user", "unknown", "garbage"]),
)
async def test_hostile_headers_and_ids(
    service: RunningService, user: dict[str, object], header: str, value: bytes, path: str
) -> None:
    user_id = {
        "user": str(user["id"]),
        "unknown": "0b7e5b42-5c3c-4a4c-9d2c-8f1f0e0f5a11",
        "garbage": "%ED%A0%80%FF",
    }[path]
    for method in ("GET", "PATCH", "DELETE", "POST"):
        target = "/v1/users" if method == "POST" else f"/v1/users/{user_id}"
        body = json_text({"first_name": "Ada"} if method == "PATCH" else new_user())
        status, headers, response = await raw_request(
            service,
            f"{method} {target} HTTP/1.1\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
            + header.encode()
            + b": "
            + value
            + b"\r\n\r\n"
            + body,
        )
        assert status < 500, response
        if status >= 400:
            assert b"application/problem+json" in headers, response


@HOSTILE
@given(
    query=st.lists(
        st.tuples(
            st.sampled_from([*sorted(LIST_PARAMS), "x"]),
            st.sampled_from(
                [
                    "%ED%A0%80",
                    "%FF",
                    "%00",
                    "%E2%80%8B",
                    "9" * 5000,
                    "-1",
                    "0001-01-01T00:00:00%2B01:00",
                    "9999-12-31T23:59:59-01:00",
                    "%C4%B1t",
                    "%C5%BFe",
                    "GB",
                ]
            ),
        ),
        max_size=3,
    )
)
async def test_list_queries(service: RunningService, query: list[tuple[str, str]]) -> None:
    target = "/v1/users?" + "&".join(f"{k}={v}" for k, v in query)
    status, headers, response = await raw_request(service, f"GET {target} HTTP/1.1\r\n\r\n".encode())
    assert status < 500, response
    if status >= 400:
        assert b"application/problem+json" in headers, response


async def raw_request(service: RunningService, request: bytes) -> tuple[int, bytes, bytes]:
    """One request over a raw socket: what no well-behaved client library would send."""
    url = urlsplit(service.http)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        head, _, rest = request.partition(b"\r\n")
        writer.write(head + b"\r\nHost: test\r\nConnection: close\r\n" + rest)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status_line, _, _ = response.partition(b"\r\n")
    headers, _, _ = response.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), headers.lower(), response


MALFORMED_HTTP = [
    b"GET /v1/users HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /v1/users HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/users HTTP/9.9\r\n\r\n",
    b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST /v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
]


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> AsyncIterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    return caplog  # type: ignore[return-value]


@pytest.mark.parametrize("request_bytes", MALFORMED_HTTP)
async def test_malformed_http_is_a_quiet_problem(
    service: RunningService, server_log: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    url = urlsplit(service.http)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(request_bytes)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status = int(response.split(b"\r\n", 1)[0].split()[1])
    assert 400 <= status < 500, response
    assert b"content-type: application/problem+json" in response.lower(), response
    loud = [r for r in server_log.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [(r.levelname, r.getMessage(), bool(r.exc_info)) for r in loud]
