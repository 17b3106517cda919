"""The Python client's event stream against `userservice serve` processes behind a loopback proxy (a stable
address, as a Kubernetes Service gives): it resumes after the last event it yielded when the service restarts, waits
for a place when the instance serves its most watchers, and reports pruned events as a gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from tests.integration.clients.support import user, watching_retries
from tests.support.blackhole import BlackHoleProxy, black_hole_proxy
from tests.support.pruning import prune_everything_so_far
from tests.support.service import ServiceProcess, in_process
from userservice_client import Client, EventStream, RetryPolicy, errors, messages

ENV = {"EVENT_WATCHERS_MAX": "1"}
PATIENT = RetryPolicy(attempts=100, initial=0.05, maximum=0.5)


def grpc_port(process: ServiceProcess) -> int:
    return int(process.grpc.rsplit(":", 1)[1])


@dataclass
class Deployed:
    """One `userservice serve` at a time behind the proxy's address."""

    database: str
    proxy: BlackHoleProxy
    process: ServiceProcess

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"

    def stop(self) -> None:
        self.process.terminate()
        assert self.process.wait() == 0

    def start(self) -> None:
        self.process = ServiceProcess(self.database, env=ENV).start()
        self.proxy.target_port = grpc_port(self.process)


@pytest.fixture(scope="module")
def deployed(database: str) -> Iterator[Deployed]:
    process = ServiceProcess(database, env=ENV).start()
    with black_hole_proxy(grpc_port(process)) as proxy:
        running = Deployed(database, proxy, process)
        try:
            yield running
        finally:
            running.process.kill()


@pytest.fixture
async def client(deployed: Deployed) -> AsyncIterator[Client]:
    async with Client(deployed.target, retry=PATIENT, deadline=60) as opened:
        yield opened


async def about(events: EventStream, subjects: set[str], count: int) -> list[messages.UserEvent]:
    """The next `count` events about `subjects` (other tests' events are skipped)."""
    found: list[messages.UserEvent] = []
    async with asyncio.timeout(60):
        async for event in events:
            if event.subject in subjects:
                found.append(event)
                if len(found) == count:
                    return found
    raise AssertionError("the stream ended")


async def test_the_stream_resumes_after_a_restart_after_the_last_event_it_yielded(
    deployed: Deployed, client: Client
) -> None:
    """While the service is down another replica takes two creates; the stream's next events are exactly
    those two: nothing yielded again, nothing skipped."""
    first = await client.create_user(user())
    async with client.watch_events("earliest") as events:
        (seen,) = await about(events, {first.id}, 1)
        await asyncio.to_thread(deployed.stop)
        async with in_process(deployed.database) as other, Client(other.grpc) as direct:
            later = [await direct.create_user(user()) for _ in range(2)]
        await asyncio.to_thread(deployed.start)
        with watching_retries() as reconnects:
            resumed = await about(events, {first.id, *(u.id for u in later)}, 2)
    assert [(e.type, e.subject) for e in resumed] == [("io.userservice.user.created.v1", u.id) for u in later]
    assert events.cursor == resumed[-1].cursor and seen.cursor not in {e.cursor for e in resumed}
    assert reconnects.messages, "the stream never had to reconnect"


async def test_a_watcher_over_the_cap_waits_for_a_free_place(client: Client) -> None:
    created = await client.create_user(user())
    async with client.watch_events("earliest") as holder:
        await about(holder, {created.id}, 1)  # the instance's one place is taken
        with watching_retries() as retries:
            waiting = client.watch_events("earliest")
            first = asyncio.create_task(about(waiting, {created.id}, 1))
            await asyncio.wait_for(retries.seen.wait(), 30)
    assert "TOO_MANY_WATCHERS" in retries.messages[0]
    assert [e.subject for e in await first] == [created.id]
    await waiting.aclose()


async def test_pruned_events_after_the_cursor_are_a_gap_the_caller_sees(
    deployed: Deployed, client: Client
) -> None:
    await client.create_user(user())
    async with client.watch_events("earliest") as events:
        stored = (await anext(events)).cursor
    pool = await asyncpg.create_pool(deployed.database, min_size=1, max_size=2)
    try:
        await prune_everything_so_far(pool)
    finally:
        await pool.close()
    kept = await client.create_user(user())
    with pytest.raises(errors.EventGap) as gap:
        async with client.watch_events(stored) as events:
            await anext(events)
    assert gap.value.oldest_cursor
    async with client.watch_events(gap.value.oldest_cursor) as events:
        assert (await about(events, {kept.id}, 1))[0].subject == kept.id
