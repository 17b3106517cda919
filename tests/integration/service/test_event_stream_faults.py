"""The event stream under hostile cursors and faults: refused before streaming, or ended the SSE way."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.support.postgres import create_database, drop_database
from tests.support.service import in_process
from tests.support.sse import read_events
from tests.support.users import new_user
from userservice.core.maintenance import prune_once
from userservice.domain import events
from userservice.store.db import create_pool
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


async def first_message_error(stub: pb_grpc.UserServiceStub, cursor: str) -> grpc.aio.AioRpcError:
    call = stub.WatchUserEvents(pb.WatchUserEventsRequest(after_cursor=cursor))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), 10)
    return info.value


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


async def test_a_cursor_beyond_the_end_of_the_stream_is_refused(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub, database: str
) -> None:
    conn = await asyncpg.connect(database)
    try:
        end = int(await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
    finally:
        await conn.close()
    for cursor in (f"{end + 1000}-0", f"{2**63}-1"):
        async with http.get("/v1/events", headers={"Last-Event-ID": cursor}) as resp:
            assert resp.status == 400 and resp.content_type == "application/problem+json"
            assert "beyond the end" in (await resp.json())["errors"][0]["message"]
        error = await first_message_error(stub, cursor)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def cursors_in(database: str) -> list[str]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT tx::text || '-' || seq AS c FROM user_events ORDER BY tx, seq")
    finally:
        await conn.close()
    return [r["c"] for r in rows]


async def test_a_cursor_older_than_retention_is_refused_naming_the_oldest_cursor(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub, database: str
) -> None:
    for _ in range(2):
        async with http.post("/v1/users", json=new_user()) as resp:
            assert resp.status == 201
    old = await cursors_in(database)
    pool = await create_pool(database, 2, 10)
    try:
        async with pool.acquire() as conn:  # a pruning round two hours ago saw the stream's current end
            await conn.execute(
                """INSERT INTO user_events_horizons (observed_at, tx)
                   VALUES (now() - interval '2 hours', pg_snapshot_xmax(pg_current_snapshot()))"""
            )
        async with http.post("/v1/users", json=new_user()) as resp:
            kept = (await resp.json())["id"]
        assert await prune_once(pool, event_retention=3600, failure_window=3600) == (len(old), 0, 0)
    finally:
        await pool.close()
    async with http.get("/v1/events", headers={"Last-Event-ID": old[0]}) as resp:
        assert resp.status == 410 and resp.content_type == "application/problem+json"
        body = await resp.json()
    assert body["type"].endswith("/cursor-expired") and body["oldest_cursor"] == old[-1]
    error = await first_message_error(stub, old[0])
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert error_info(error).metadata["oldest_cursor"] == old[-1]
    # From the oldest cursor named, every kept event follows.
    async with http.get("/v1/events", headers={"Last-Event-ID": old[-1]}) as resp:
        assert resp.status == 200
        async for event in read_events(resp):
            assert event.data["subject"] == kept
            break


async def test_pruning_keeps_events_that_no_reader_could_see_yet(database: str) -> None:
    pool = await create_pool(database, 3, 10)  # writer, reader and the pruning round
    try:
        async with pool.acquire() as writer, pool.acquire() as conn:
            # Any horizon recorded before the writer commits lies at or below its transaction.
            await conn.execute(
                """INSERT INTO user_events_horizons (observed_at, tx)
                   VALUES (now() - interval '2 hours', pg_snapshot_xmax(pg_current_snapshot()))"""
            )
            async with writer.transaction():  # began "long ago": its event's time is older than the retention
                await writer.execute(
                    "INSERT INTO user_events (type, subject, time, data) VALUES ($1, $2, now() - interval '3 hours', $3)",
                    events.CREATED,
                    uuid.uuid4(),
                    {"n": "late"},
                )
                await prune_once(pool, event_retention=3600, failure_window=3600)
            await prune_once(
                pool, event_retention=3600, failure_window=3600
            )  # committed now: visible only from now on
            kept = await conn.fetchval("SELECT count(*) FROM user_events WHERE data->>'n' = 'late'")
    finally:
        await pool.close()
    assert kept == 1
