"""Change events: CloudEvents over SSE and gRPC, resumable, in commit order, across replicas."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import uuid
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest

from tests.support.service import RunningService, ServiceProcess, in_process
from tests.support.sse import SseEvent, collect_until, read_events
from tests.support.users import new_user
from userservice.domain import events
from userservice.store import outbox
from userservice.store.db import create_pool
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


async def collect_sse(
    http: aiohttp.ClientSession,
    count: int,
    headers: dict[str, str] | None = None,
    connected: asyncio.Event | None = None,
) -> list[SseEvent]:
    events: list[SseEvent] = []
    async with http.get("/v1/events", headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        assert await resp.content.readline() == b": connected\n"  # from here on, every commit reaches us
        assert await resp.content.readline() == b"\n"
        if connected is not None:
            connected.set()
        async for event in read_events(resp):
            events.append(event)
            if len(events) == count:
                return events
    raise AssertionError(f"stream ended after {len(events)} events")


async def write_changes(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.post("/v1/users", json=new_user()) as resp:
        user = await resp.json()
    async with http.patch(
        f"/v1/users/{user['id']}", json={"first_name": "Changed", "password": "a brand new password"}
    ) as resp:
        assert resp.status == 200
    async with http.delete(f"/v1/users/{user['id']}") as resp:
        assert resp.status == 204
    return user  # type: ignore[no-any-return]


async def test_sse_delivers_cloudevents_and_resumes(http: aiohttp.ClientSession) -> None:
    connected = asyncio.Event()
    watcher = asyncio.create_task(collect_sse(http, 4, connected=connected))
    await asyncio.wait_for(connected.wait(), 20)
    user = await write_changes(http)
    events = await asyncio.wait_for(watcher, 20)
    types = [e.event for e in events]
    assert types == [
        "io.userservice.user.created.v1",
        "io.userservice.user.updated.v1",
        "io.userservice.user.password_changed.v1",
        "io.userservice.user.deleted.v1",
    ]
    created, updated, password_changed, deleted = (e.data for e in events)
    assert password_changed["data"] == {"user": updated["data"]["user"]}
    assert (
        created["specversion"] == "1.0"
        and created["subject"] == user["id"]
        and created["source"] == "/userservice"
    )
    assert created["data"]["user"]["nickname"] == user["nickname"]
    assert updated["data"]["changed_fields"] == ["first_name", "password"]
    assert deleted["data"]["user"]["first_name"] == "Changed"
    assert all("password" not in e.data["data"]["user"] for e in events)
    assert "brand new" not in str(events)
    assert len({e.data["id"] for e in events}) == 4
    # AUTH_MODE=none: the authcontext says so, and names nobody.
    assert all(e.data["authtype"] == "unauthenticated" and "authid" not in e.data for e in events)
    # Resume after the first event: the next three come again, from the table.
    resumed = await asyncio.wait_for(collect_sse(http, 3, headers={"Last-Event-ID": events[0].id}), 20)
    assert [e.data["id"] for e in resumed] == [e.data["id"] for e in events[1:]]


async def test_grpc_watch_resumes_from_cursor(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub
) -> None:
    async def watch(after: str, count: int, connected: asyncio.Event | None = None) -> list[pb.UserEvent]:
        got: list[pb.UserEvent] = []
        call = stub.WatchUserEvents(pb.WatchUserEventsRequest(after_cursor=after))
        await call.initial_metadata()  # from here on, every commit reaches us
        if connected is not None:
            connected.set()
        async for event in call:
            got.append(event)
            if len(got) == count:
                call.cancel()
                return got
        return got

    connected = asyncio.Event()
    task = asyncio.create_task(watch("", 4, connected))
    await asyncio.wait_for(connected.wait(), 20)
    user = await write_changes(http)
    received = await asyncio.wait_for(task, 20)
    assert [e.type.rsplit(".", 2)[1] for e in received] == [
        "created",
        "updated",
        "password_changed",
        "deleted",
    ]
    assert all(e.subject == user["id"] and e.user.password == "" for e in received)
    assert list(received[1].changed_fields) == ["first_name", "password"]
    again = await asyncio.wait_for(watch(received[0].cursor, 3), 20)
    assert [e.id for e in again] == [e.id for e in received[1:]]
    with_bad_cursor = stub.WatchUserEvents(pb.WatchUserEventsRequest(after_cursor="zzz"))
    try:
        async for _ in with_bad_cursor:
            raise AssertionError("a bad cursor must fail")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_events_follow_commit_order_under_concurrent_writers(
    http: aiohttp.ClientSession, service: RunningService
) -> None:
    connected = asyncio.Event()
    watcher = asyncio.create_task(collect_sse(http, 30, connected=connected))
    await asyncio.wait_for(connected.wait(), 20)

    async def create() -> str:
        async with http.post("/v1/users", json=new_user()) as resp:
            return str((await resp.json())["id"])

    ids = await asyncio.gather(*(create() for _ in range(30)))
    events = await asyncio.wait_for(watcher, 30)
    assert sorted(e.data["subject"] for e in events) == sorted(ids)
    cursors = [tuple(int(p) for p in e.id.split("-")) for e in events]
    assert cursors == sorted(cursors)


async def test_watcher_on_one_replica_sees_writes_through_another(database: str) -> None:
    replicas = [ServiceProcess(database).start(), ServiceProcess(database).start()]
    try:
        reader, writer = replicas
        async with (
            aiohttp.ClientSession(base_url=reader.http) as on_reader,
            aiohttp.ClientSession(base_url=writer.http) as on_writer,
        ):
            connected = asyncio.Event()
            sse = asyncio.create_task(collect_sse(on_reader, 3, connected=connected))
            async with grpc.aio.insecure_channel(reader.grpc) as channel:
                stub = pb_grpc.UserServiceStub(channel)
                stream = stub.WatchUserEvents(pb.WatchUserEventsRequest())
                await stream.initial_metadata()
                await asyncio.wait_for(connected.wait(), 20)
                user = await write_changes(on_writer)
                grpc_events = []
                async for event in stream:
                    grpc_events.append(event)
                    if len(grpc_events) == 3:
                        break
                stream.cancel()
            sse_events = await asyncio.wait_for(sse, 20)
        assert {e.data["subject"] for e in sse_events} == {user["id"]}
        assert [e.subject for e in grpc_events] == [user["id"]] * 3
    finally:
        for replica in replicas:
            replica.kill()


async def test_an_open_transaction_in_another_database_does_not_stall_the_feed(
    http: aiohttp.ClientSession, postgres_dsn: str
) -> None:
    elsewhere = await asyncpg.connect(postgres_dsn)  # the server's `postgres` database, not the service's
    try:
        async with elsewhere.transaction():
            await elsewhere.fetchval("SELECT pg_current_xact_id()")  # holds an xid: the server-wide xmin
            connected = asyncio.Event()
            watcher = asyncio.create_task(collect_sse(http, 1, connected=connected))
            await asyncio.wait_for(connected.wait(), 20)
            async with http.post("/v1/users", json=new_user()) as resp:
                user = await resp.json()
            (event,) = await asyncio.wait_for(watcher, 20)  # delivered while that transaction stays open
            assert event.data["subject"] == user["id"]
    finally:
        await elsewhere.close()


async def test_interleaved_long_and_aborted_transactions_arrive_once_each_in_commit_order(
    http: aiohttp.ClientSession, database: str
) -> None:
    pool = await create_pool(database, 12, 30)
    committed: list[str] = []
    rng = random.Random(7)

    async def write(i: int, hold: float, commit: bool) -> None:
        subject = uuid.uuid4()
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.fetchval("SELECT pg_current_xact_id()")  # the xid is taken early, as by a change
            await asyncio.sleep(hold)
            await outbox.append(conn, events.UPDATED, subject, {"n": i})
            await asyncio.sleep(hold)
            if commit:
                await tx.commit()
                committed.append(str(subject))
            else:
                await tx.rollback()

    connected = asyncio.Event()
    first = asyncio.create_task(collect_until(http, "end", connected=connected))
    try:
        await asyncio.wait_for(connected.wait(), 20)
        writers = [write(0, 1.5, True), write(1, 1.2, False)]  # a long one committing late, a long abort
        writers += [write(i, rng.uniform(0, 0.05), rng.random() > 0.2) for i in range(2, 60)]
        await asyncio.gather(*writers)
        async with pool.acquire() as conn:
            await outbox.append(conn, events.UPDATED, uuid.uuid4(), {"n": "end"})
        delivered = await asyncio.wait_for(first, 30)
    finally:
        await pool.close()
    subjects = [e.data["subject"] for e in delivered[:-1]]
    assert sorted(subjects) == sorted(committed)  # every committed event once; nothing rolled back
    cursors = [tuple(int(p) for p in e.id.split("-")) for e in delivered]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    # Resuming from any delivered cursor gives exactly the rest, in the same order.
    middle = len(delivered) // 2
    resumed = await asyncio.wait_for(
        collect_until(http, "end", headers={"Last-Event-ID": delivered[middle].id}), 20
    )
    assert [e.id for e in resumed] == [e.id for e in delivered[middle + 1 :]]


async def test_cursors_order_by_number_not_by_text(http: aiohttp.ClientSession, database: str) -> None:
    pool = await create_pool(database, 1, 10)
    try:
        async with pool.acquire() as conn:
            for tx, n in ((10, "ten"), (9, "nine")):  # long committed transaction ids of one and two digits
                await conn.execute(
                    "INSERT INTO user_events (tx, type, subject, data) VALUES ($1::text::xid8, $2, $3, $4)",
                    str(tx),
                    events.UPDATED,
                    uuid.uuid4(),
                    {"n": n},
                )
    finally:
        await pool.close()
    got = await asyncio.wait_for(collect_until(http, "ten", headers={"Last-Event-ID": "8-0"}), 20)
    assert [e.data["data"]["n"] for e in got] == ["nine", "ten"]


async def test_cancelling_a_grpc_watch_right_after_an_event_logs_no_error(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        in_process(database) as running,
        aiohttp.ClientSession(base_url=running.http) as http,
        grpc.aio.insecure_channel(running.grpc) as channel,
    ):
        stub = pb_grpc.UserServiceStub(channel)
        for n in range(30):
            call = stub.WatchUserEvents(pb.WatchUserEventsRequest())
            await call.initial_metadata()
            for _ in range(1 + n % 3):
                async with http.post("/v1/users", json=new_user()) as resp:
                    assert resp.status == 201
            await asyncio.wait_for(call.read(), 20)
            call.cancel()
            await asyncio.sleep(n % 4 * 0.01)
        for _ in range(20):  # until the server has seen every cancellation
            await asyncio.sleep(0.1)
        gc.collect()  # a task whose exception nobody retrieved is reported when it is collected
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
