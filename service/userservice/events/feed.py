"""Follows the outbox for any number of watchers in this process.

One dedicated connection LISTENs for the NOTIFY that every committed change sends, on any replica, and wakes
the watchers; each watcher then reads the table from its own cursor. A missed notification (the listening
connection dropped, or an older transaction was still open) only delays delivery until the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from userservice.domain.events import Cursor, StoredEvent
from userservice.events import outbox

log = logging.getLogger(__name__)

BATCH = 500


class EventFeed:
    def __init__(self, dsn: str, pool: asyncpg.Pool, poll_interval: float) -> None:
        self._dsn = dsn
        self._pool = pool
        self._poll_interval = poll_interval
        self._wakeups: set[asyncio.Event] = set()
        self._listener: asyncio.Task[None] | None = None

    @property
    def watchers(self) -> int:
        return len(self._wakeups)

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="event-feed-listener")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    def _wake_all(self, *_: object) -> None:
        for wakeup in self._wakeups:
            wakeup.set()

    async def _listen(self) -> None:
        """Keeps one LISTEN connection open, reconnecting with backoff."""
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(outbox.CHANNEL, self._wake_all)
                delay = 0.5
                self._wake_all()  # anything committed while we were not listening
                await lost.wait()
                log.warning("event listener connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning(
                    "event listener cannot connect; retrying", extra={"error": str(exc), "retry_in": delay}
                )
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def head(self) -> Cursor:
        return await outbox.head(self._pool)

    async def watch(self, after: Cursor | None, stop: asyncio.Event) -> AsyncIterator[StoredEvent | None]:
        """Yields events after `after` (from now on when None), live, until `stop` is set. Yields None after
        each quiet poll interval, so a transport can send keep-alives and notice a departed client."""
        cursor = after if after is not None else await self.head()
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        try:
            while not stop.is_set():
                wakeup.clear()
                horizon = await outbox.horizon(self._pool)
                batch = await outbox.read_after(self._pool, cursor, horizon.tx, BATCH)
                for event in batch:
                    yield event
                    cursor = event.cursor
                if len(batch) == BATCH:
                    continue
                await _first_of(wakeup, stop, self._poll_interval)
                if not (wakeup.is_set() or stop.is_set()):
                    yield None
        finally:
            self._wakeups.discard(wakeup)


async def _first_of(a: asyncio.Event, b: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
