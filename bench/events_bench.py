"""Event latency: from the commit of a change to its arrival at a WatchUserEvents consumer; baseline: the same
commit to a raw asyncpg LISTEN on the outbox channel (what PostgreSQL's NOTIFY alone costs).

Changes are committed one at a time, with the service's own outbox SQL, each after the previous arrived."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import asyncpg
import grpc

from userservice.domain import events
from userservice.store import outbox
from userservice.store import users as store
from userservice.store.db import create_pool
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


async def _commit(pool: asyncpg.Pool, uid: UUID) -> float:
    """Appends an event as the service does; the time COMMIT was sent."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        user = await store.get(conn, uid)
        assert user is not None
        await outbox.append(conn, events.UPDATED, uid, events.event_data(user.public(), ("first_name",)))
        committed = time.perf_counter()
        await tx.commit()
        return committed


async def grpc_latencies(dsn: str, address: str, uid: UUID, count: int) -> list[float]:
    pool = await create_pool(dsn, 2, 10)
    latencies: list[float] = []
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.UserServiceStub(channel)
            stream = stub.WatchUserEvents(pb.WatchUserEventsRequest())
            await asyncio.sleep(0.5)  # the watch has taken its starting cursor
            for _ in range(count):
                committed = await _commit(pool, uid)
                while True:  # only ours: nothing else writes this user
                    event = await asyncio.wait_for(stream.read(), timeout=10)
                    if event.subject == str(uid):
                        break
                latencies.append(time.perf_counter() - committed)
                await asyncio.sleep(0.005)
            stream.cancel()
    finally:
        await pool.close()
    return latencies


async def notify_latencies(dsn: str, uid: UUID, count: int) -> list[float]:
    pool = await create_pool(dsn, 2, 10)
    listener = await asyncpg.connect(dsn)
    arrived: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener(outbox.CHANNEL, lambda *_: arrived.put_nowait(time.perf_counter()))
    latencies: list[float] = []
    try:
        for _ in range(count):
            while not arrived.empty():  # a notification of someone else's commit
                arrived.get_nowait()
            committed = await _commit(pool, uid)
            got = await asyncio.wait_for(arrived.get(), timeout=10)
            latencies.append(got - committed)
            await asyncio.sleep(0.005)
    finally:
        await listener.close()
        await pool.close()
    return latencies
