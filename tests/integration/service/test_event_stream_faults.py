"""The event stream under hostile cursors and faults: refused before streaming, or ended the SSE way."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import grpc
import pytest

from tests.support.postgres import create_database, drop_database
from tests.support.service import in_process
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

IMPOSSIBLE_CURSORS = (
    "1-99999999999999999999",  # the sequence number overflows bigint
    "18446744073709551616-1",  # the transaction id overflows xid8
    "1-9223372036854775808",
    "zzz",
    "1-2-3",
    "-1-1",
)


@pytest.mark.parametrize("cursor", IMPOSSIBLE_CURSORS)
async def test_sse_refuses_an_impossible_cursor_before_streaming(
    http: aiohttp.ClientSession, cursor: str
) -> None:
    async with http.get("/v1/events", headers={"Last-Event-ID": cursor}) as resp:
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"
        body = await resp.json()
    assert body["errors"][0]["field"] == "Last-Event-ID"
    async with http.get("/v1/events", params={"after": cursor}) as resp:
        assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "after"


@pytest.mark.parametrize("cursor", IMPOSSIBLE_CURSORS)
async def test_grpc_refuses_an_impossible_cursor_before_the_first_message(
    stub: pb_grpc.UserServiceStub, cursor: str
) -> None:
    call = stub.WatchUserEvents(pb.WatchUserEventsRequest(after_cursor=cursor))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), 10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after_cursor" in (info.value.details() or "")


async def test_database_outage_mid_stream_ends_sse_with_an_error_event(postgres_dsn: str) -> None:
    dsn = await create_database(postgres_dsn)
    name = urlsplit(dsn).path.lstrip("/")
    try:
        async with (
            in_process(dsn) as running,
            aiohttp.ClientSession(base_url=running.http) as http,
            http.get("/v1/events", timeout=aiohttp.ClientTimeout(total=30)) as resp,
        ):
            assert resp.status == 200
            assert await resp.content.readline() == b": connected\n"
            admin = await asyncpg.connect(postgres_dsn)
            try:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
                )
            finally:
                await admin.close()
            raw = await asyncio.wait_for(resp.content.read(), 20)  # to the end: the server closes
        assert b"HTTP/1.1" not in raw  # no second response inside the stream
        error = raw.split(b"event: error\n", 1)
        assert len(error) == 2, raw
        assert error[1].startswith(b"data: {") and error[1].endswith(b"}\n\n")
        assert b'"status":503' in error[1] and b"problems/unavailable" in error[1]
    finally:
        await drop_database(postgres_dsn, dsn)
