"""REST connections over raw loopback sockets: silent, dripping and idle clients are cut off, the number of
open connections is capped, and each of these shows in the metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.support.service import RunningService, in_process
from tests.support.users import new_user

HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS = 0.5, 1.5, 4
GET = b"GET /nothing HTTP/1.1\r\nHost: test\r\n\r\n"
# The end of the answer to GET: a 404 problem, which needs no authentication and no database.
NOT_FOUND_END = b'"detail":"Not Found"}'


@pytest.fixture(scope="module")
async def guarded(database: str) -> AsyncIterator[RunningService]:
    async with in_process(
        database,
        http_header_timeout=HEADER_TIMEOUT,
        http_idle_timeout=IDLE_TIMEOUT,
        http_max_connections=MAX_CONNECTIONS,
    ) as running:
        yield running


async def connect(service: RunningService) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(service.http)
    return await asyncio.open_connection(url.hostname, url.port)


async def closed_after(reader: asyncio.StreamReader) -> tuple[float, bytes]:
    """Seconds until the server closes the connection, and what it sent before."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), timeout=30)
    return time.monotonic() - started, data


async def metric(service: RunningService, sample: str) -> float | None:
    """One sample from /metrics, read over a connection that closes with the response; None while the server
    turns connections away (over its cap)."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.get(f"{service.management}/metrics") as resp,
    ):
        if resp.status == 503:
            return None
        text = await resp.text()
    return next(
        (float(line.removeprefix(sample)) for line in text.splitlines() if line.startswith(sample)), 0.0
    )


async def closed_count(service: RunningService, reason: str) -> float:
    count = await metric(service, f'userservice_http_connections_closed_total{{reason="{reason}"}} ')
    assert count is not None
    return count


async def wait_until_no_connection_is_open(service: RunningService) -> None:
    """Until the API server has seen every earlier connection go (metrics are read on the management port)."""
    for _ in range(100):
        open_now = await metric(service, "userservice_http_connections_open ")
        if open_now is not None and open_now == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("connections stay open")


async def test_a_connection_that_sends_nothing_is_closed(guarded: RunningService) -> None:
    before = await closed_count(guarded, "header_timeout")
    reader, writer = await connect(guarded)
    elapsed, data = await closed_after(reader)
    writer.close()
    assert data == b"" and elapsed < HEADER_TIMEOUT * 10
    assert await closed_count(guarded, "header_timeout") == before + 1


async def test_a_header_drip_is_cut_off(guarded: RunningService) -> None:
    before = await closed_count(guarded, "header_timeout")
    reader, writer = await connect(guarded)
    writer.write(b"GET /nothing HTTP/1.1\r\nHost: test\r\n")
    started, sent = time.monotonic(), 0
    while not reader.at_eof() and time.monotonic() - started < HEADER_TIMEOUT * 20:
        writer.write(b"X-Drip: a\r\n"[sent % 11 : sent % 11 + 1])  # one header byte every 50 ms, forever
        sent += 1
        await asyncio.sleep(0.05)
    writer.close()
    assert reader.at_eof() and await reader.read() == b"", f"still open after {sent} bytes"
    assert await closed_count(guarded, "header_timeout") == before + 1


async def test_an_idle_kept_alive_connection_is_closed_and_a_busy_one_is_not(guarded: RunningService) -> None:
    before = await closed_count(guarded, "idle_timeout")
    reader, writer = await connect(guarded)
    for _ in range(3):  # requests closer together than either timeout keep it open
        writer.write(GET)
        await writer.drain()
        assert (await reader.readuntil(NOT_FOUND_END)).startswith(b"HTTP/1.1 404")
        await asyncio.sleep(IDLE_TIMEOUT / 3)
    elapsed, data = await closed_after(reader)
    writer.close()
    assert data == b"" and elapsed < IDLE_TIMEOUT * 10
    assert await closed_count(guarded, "idle_timeout") == before + 1


async def test_connections_over_the_cap_get_503_and_are_closed(guarded: RunningService) -> None:
    before = await closed_count(guarded, "cap")
    await wait_until_no_connection_is_open(guarded)
    held = [await connect(guarded) for _ in range(MAX_CONNECTIONS)]
    for reader, writer in held:  # each serves a request: they are open, not refused
        writer.write(GET)
        await writer.drain()
        assert (await reader.readuntil(NOT_FOUND_END)).startswith(b"HTTP/1.1 404")
    reader, writer = await connect(guarded)
    _, data = await closed_after(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 503") and b"application/problem+json" in data
    for _, held_writer in held:
        held_writer.close()
    await wait_until_no_connection_is_open(guarded)
    assert await closed_count(guarded, "cap") > before
    reader, writer = await connect(guarded)  # below the cap again
    writer.write(GET)
    assert (await reader.readuntil(NOT_FOUND_END)).startswith(b"HTTP/1.1 404")
    writer.close()


async def test_the_head_deadline_never_cuts_a_request_being_served(database: str) -> None:
    """A body that arrives after its head but before its handler starts is not the next request's head: a batch
    whose hashing outlasts the header timeout is answered, not cut off while it commits."""
    async with in_process(
        database, env={"ARGON2_MEMORY_KIB": "8192", "ARGON2_TIME_COST": "2"}, http_header_timeout=0.3
    ) as service:
        body = json.dumps({"requests": [{"user": new_user()} for _ in range(60)]}).encode()
        head = (
            "POST /v1/users:batchCreate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer = await connect(service)
        loop = asyncio.get_running_loop()
        writer.write(head)
        # The body lands one loop turn after the head: the server reads it before its handler task first runs.
        loop.call_at(loop.time(), writer.write, body)
        status = await asyncio.wait_for(reader.readline(), timeout=60)
        writer.close()
    assert status.startswith(b"HTTP/1.1 200"), status
