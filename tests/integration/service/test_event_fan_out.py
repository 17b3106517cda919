"""One reader per process fans events out to every watcher: database load independent of the number of
watchers, catch-up then live without gap or duplicate, a cap on watchers, and slow consumers cut off."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.support.service import RunningService, in_process
from tests.support.sse import SseEvent, collect_until, read_events
from tests.support.users import new_user
from userservice.domain import events
from userservice.store import outbox
from userservice.store.db import create_pool
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


async def open_sse(
    http: aiohttp.ClientSession, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    resp = await http.get("/v1/events", headers=headers, timeout=aiohttp.ClientTimeout(total=120))
    assert resp.status == 200
    assert await resp.content.readline() == b": connected\n"
    return resp


async def metric(service: RunningService, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{service.management}/metrics") as resp:
        text = await resp.text()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def append_many(dsn: str, count: int, marker: object, extra: dict[str, object] | None = None) -> None:
    """`count` events in one transaction, the last one marked; NOTIFY at commit as the service does."""
    pool = await create_pool(dsn, 1, 60)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO user_events (type, subject, data)
                   SELECT $1, gen_random_uuid(), $3::jsonb || jsonb_build_object('n', i)
                   FROM generate_series(1, $2) AS i""",
                events.UPDATED,
                count - 1,
                extra or {},
            )
            await outbox.append(conn, events.UPDATED, uuid.uuid4(), {**(extra or {}), "n": marker})
    finally:
        await pool.close()


async def slow_drops(service: RunningService) -> None:
    """Returns once the feed has cut a watcher off for slowness."""
    for _ in range(300):
        if await metric(service, 'userservice_event_watchers_dropped_total{reason="slow"}') >= 1:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no watcher was cut off")


@contextlib.asynccontextmanager
async def service_with(
    database: str, **settings: object
) -> AsyncIterator[tuple[RunningService, aiohttp.ClientSession]]:
    async with (
        in_process(database, **settings) as running,
        aiohttp.ClientSession(base_url=running.http, connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        yield running, http


async def test_feed_queries_do_not_grow_with_idle_watchers(database: str, postgres_dsn: str) -> None:
    name = urlsplit(database).path.lstrip("/")
    stats = await asyncpg.connect(postgres_dsn)  # another database: its own queries are not counted

    async def transactions_in(seconds: float) -> int:
        await asyncio.sleep(1.5)  # backends report their statistics at most once a second
        query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1"
        before = await stats.fetchval(query, name)
        await asyncio.sleep(seconds)
        return int(await stats.fetchval(query, name)) - int(before)

    try:
        async with service_with(database) as (running, http):
            streams = [await open_sse(http)]
            few = await transactions_in(4)
            streams += [await open_sse(http) for _ in range(149)]
            async with grpc.aio.insecure_channel(running.grpc) as channel:
                stub = pb_grpc.UserServiceStub(channel)
                calls = [stub.WatchUserEvents(pb.WatchUserEventsRequest()) for _ in range(50)]
                for call in calls:
                    await call.initial_metadata()
                many = await transactions_in(4)
                for call in calls:
                    call.cancel()
            for stream in streams:
                stream.close()
    finally:
        await stats.close()
    # Polling every 0.5 s: two queries per poll for the whole process, whether 1 or 200 watch.
    assert many <= few + 12, f"1 watcher: {few} transactions in 4 s; 200 watchers: {many}"


async def test_watchers_join_the_live_feed_after_catching_up_without_gap_or_duplicate(database: str) -> None:
    # A small buffer makes the reader and the catch-up read in small batches: many rounds of each.
    async with service_with(database, event_watcher_queue=20) as (_running, http):
        pool = await create_pool(database, 4, 30)
        try:
            connected = [asyncio.Event(), asyncio.Event()]
            reference = asyncio.create_task(collect_until(http, "end", connected=connected[0]))
            firsts = asyncio.create_task(collect_until(http, "first", connected=connected[1]))
            await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), 20)
            await append_many(database, 200, "first")
            head = await asyncio.wait_for(firsts, 30)  # cursors to start from

            async def writer() -> None:
                for i in range(150):
                    async with pool.acquire() as conn, conn.transaction():
                        await outbox.append(conn, events.UPDATED, uuid.uuid4(), {"n": i})
                    await asyncio.sleep(0.005)
                async with pool.acquire() as conn:
                    await outbox.append(conn, events.UPDATED, uuid.uuid4(), {"n": "end"})

            async def late(start: SseEvent, delay: float) -> tuple[str, list[SseEvent]]:
                await asyncio.sleep(delay)
                return start.id, await collect_until(http, "end", headers={"Last-Event-ID": start.id})

            writing = asyncio.create_task(writer())
            starts = [(head[0], 0.1), (head[50], 0.3), (head[120], 0.5), (head[-1], 0.7), (head[10], 0.9)]
            late_ones = await asyncio.wait_for(asyncio.gather(*(late(s, d) for s, d in starts)), 60)
            await writing
            everything = await asyncio.wait_for(reference, 30)
        finally:
            await pool.close()
    ids = [e.id for e in everything]
    assert len(ids) == len(set(ids)) == 200 + 151
    for start, got in late_ones:
        assert [e.id for e in got] == ids[ids.index(start) + 1 :], f"from {start}"


async def test_watchers_beyond_the_cap_are_refused_until_one_leaves(database: str) -> None:
    async with service_with(database, event_watchers_max=2) as (running, http):
        attempts = await asyncio.gather(*(http.get("/v1/events") for _ in range(6)))  # all at once
        first, second = [resp for resp in attempts if resp.status == 200]
        for resp in attempts:
            if resp.status != 200:
                assert resp.status == 503
                resp.close()
        async with http.get("/v1/events") as resp:
            assert resp.status == 503 and resp.content_type == "application/problem+json"
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json())["type"].endswith("/too-many-watchers")
        async with grpc.aio.insecure_channel(running.grpc) as channel:
            call = pb_grpc.UserServiceStub(channel).WatchUserEvents(pb.WatchUserEventsRequest())
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(call.read(), 10)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.close()
        for _ in range(100):  # the server notices the departure at its next write or poll
            async with http.get("/v1/events") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.1)
        assert resp.status == 200
        second.close()


async def test_a_slow_consumer_is_cut_off_with_its_cursor_and_resumes_without_loss(database: str) -> None:
    # The slow client reads again within the write timeout: it is cut off by the feed, with an error event.
    async with service_with(database, event_watcher_queue=100, event_write_timeout=120) as (running, http):
        connected = asyncio.Event()
        fast = asyncio.create_task(collect_until(http, "end", connected=connected))
        await asyncio.wait_for(connected.wait(), 20)
        slow = await open_sse(http)  # reads nothing until the burst is over
        # ~12 MB: more than the socket buffers between server and client and the watcher's buffer hold.
        await append_many(database, 3000, "end", {"pad": "x" * 4000})
        everything = await asyncio.wait_for(fast, 60)  # a consumer keeping up is never cut off
        await slow_drops(running)
        got: list[SseEvent] = []
        async for event in read_events(slow):  # to the end of the stream: the server closes it
            got.append(event)
        error = got.pop()
        assert error.event == "error", error
        assert error.data["type"].endswith("/watcher-too-slow") and error.data["status"] == 503
        assert got and error.data["cursor"] == got[-1].id  # resume after the last event received
        rest = await asyncio.wait_for(
            collect_until(http, "end", headers={"Last-Event-ID": error.data["cursor"]}), 60
        )
    assert [e.id for e in got + rest] == [e.id for e in everything]


async def test_a_slow_grpc_watcher_ends_with_resource_exhausted_naming_its_cursor(database: str) -> None:
    async with service_with(database, event_watcher_queue=100, event_write_timeout=120) as (running, http):
        async with http.post("/v1/users", json=new_user()) as resp:
            user = await resp.json()
        async with grpc.aio.insecure_channel(running.grpc) as channel:
            slow = pb_grpc.UserServiceStub(channel).WatchUserEvents(pb.WatchUserEventsRequest())
            await slow.initial_metadata()  # then reads nothing until the burst is over
            await append_many(database, 3000, "end", {"user": user, "changed_fields": ["x" * 4000]})
            await slow_drops(running)
            got: list[pb.UserEvent] = []

            async def read_all() -> None:
                async for event in slow:
                    got.append(event)

            with pytest.raises(grpc.aio.AioRpcError) as info:
                await read_all()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
    assert status is not None
    detail = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(detail)
    assert detail.reason == "WATCHER_TOO_SLOW"
    assert got and detail.metadata["cursor"] == got[-1].cursor  # resume after the last event received


async def watcher_place_freed(http: aiohttp.ClientSession) -> None:
    """Returns once a new SSE watcher is admitted under a cap of one."""
    for _ in range(300):
        async with http.get("/v1/events") as resp:
            if resp.status == 200:
                return
            assert resp.status == 503
        await asyncio.sleep(0.1)
    raise AssertionError("the stalled watcher still holds its place")


@pytest.mark.parametrize("transport", ["sse", "grpc"])
async def test_a_client_that_stops_reading_is_cut_off_and_frees_its_place(
    database: str, transport: str
) -> None:
    """Once the socket buffers are full, a client that reads nothing takes no write: after the write timeout it
    is cut off and its place under the watcher cap is free again, whatever the feed decided meanwhile."""
    settings = {"event_watchers_max": 1, "event_write_timeout": 1.0}
    async with service_with(database, **settings) as (running, http), contextlib.AsyncExitStack() as stack:
        if transport == "sse":
            stalled = await open_sse(http)
            stack.callback(stalled.close)
        else:
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(running.grpc))
            call = pb_grpc.UserServiceStub(channel).WatchUserEvents(pb.WatchUserEventsRequest())
            await call.initial_metadata()
            stack.callback(call.cancel)
        async with http.get("/v1/events") as resp:
            assert resp.status == 503  # the one place is taken
        async with http.post("/v1/users", json=new_user()) as resp:
            user = await resp.json()
        # Padded where both transports carry it: more than the socket buffers and gRPC's windows hold.
        await append_many(database, 3000, "end", {"user": user, "changed_fields": ["x" * 4000]})
        await watcher_place_freed(http)
        dropped = [
            await metric(running, f'userservice_event_watchers_dropped_total{{reason="{reason}"}}')
            for reason in ("slow", "stalled")
        ]
        assert sum(dropped) >= 1, dropped
        gauge = f'userservice_event_watchers{{transport="{transport}"}}'
        for _ in range(300):  # the admitted watcher above leaves at the server's next poll
            if await metric(running, gauge) == 0:
                break
            await asyncio.sleep(0.1)
        assert await metric(running, gauge) == 0


async def test_the_stall_metric_shows_a_transaction_holding_the_feed_back(database: str) -> None:
    async with service_with(database) as (running, http):
        stream = await open_sse(http)  # the reader looks at the horizon only while someone watches
        holder = await asyncpg.connect(database)
        try:
            async with holder.transaction():
                await holder.fetchval("SELECT pg_current_xact_id()")
                async with http.post("/v1/users", json=new_user()) as resp:  # moves xmax past the holder
                    assert resp.status == 201
                stalled = 0.0
                for _ in range(100):
                    stalled = await metric(running, "userservice_event_feed_stall_seconds")
                    if stalled > 0:
                        break
                    await asyncio.sleep(0.1)
                assert stalled > 0
        finally:
            await holder.close()
        for _ in range(100):
            if await metric(running, "userservice_event_feed_stall_seconds") == 0:
                break
            await asyncio.sleep(0.1)
        assert await metric(running, "userservice_event_feed_stall_seconds") == 0
        stream.close()
