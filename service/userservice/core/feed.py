"""Follows the outbox for any number of watchers in this process.

One dedicated connection LISTENs for the NOTIFY that every committed change sends, on any replica, and wakes
the one reader of this process. The reader reads new events once and hands them to every live watcher, so the
database sees the same queries for one watcher as for a thousand. A missed notification (the listening
connection dropped) only delays delivery until the next poll.

A watcher starting behind the reader catches up from the table on its own, then joins the live fan-out at the
reader's position: events up to that position come from the table, later ones from the reader, so none is
missed or repeated. Each live watcher has a bounded buffer; one that falls further behind is cut off with the
cursor of the last event it was given, to resume from, instead of being buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable

import asyncpg

from userservice.domain.errors import invalid
from userservice.domain.events import (
    Cursor,
    CursorExpired,
    StartAt,
    StoredEvent,
    TooManyWatchers,
    WatcherTooSlow,
)
from userservice.metrics import Metrics
from userservice.store import outbox

log = logging.getLogger(__name__)

BATCH = 500


class _Live:
    """A watcher's place in the live fan-out: the events handed to it and not yet taken."""

    def __init__(self, floor: Cursor, limit: int) -> None:
        self.floor = floor  # events at or before it reached the watcher from the table
        self.limit = limit
        self.queue: deque[StoredEvent] = deque()
        self.ready = asyncio.Event()
        self.slow = False
        self.failure: Exception | None = None

    def offer(self, batch: list[StoredEvent]) -> bool:
        """Queues the events after the floor; False when that overfills the buffer."""
        self.queue.extend(e for e in batch if self.floor < e.cursor)
        self.ready.set()
        return len(self.queue) <= self.limit

    def fail(self, exc: Exception | None = None) -> None:
        """Ends the watcher: with `exc`, or as too slow when None."""
        self.queue.clear()
        self.slow = exc is None
        self.failure = exc
        self.ready.set()


class EventFeed:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        metrics: Metrics,
        poll_interval: float,
        max_watchers: int,
        queue_size: int,
        write_timeout: float,
        stopping: asyncio.Event,
    ) -> None:
        self._dsn = dsn
        self._stopping = stopping  # set on shutdown: every watch ends
        self._pool = pool
        self._metrics = metrics
        self._poll_interval = poll_interval
        self._max_watchers = max_watchers
        self._queue_size = queue_size
        self._write_timeout = write_timeout
        # A burst must fit in a keeping-up watcher's buffer between two reads.
        self._batch = max(1, min(BATCH, queue_size // 2))
        self._watching = 0
        self._live: set[_Live] = set()
        # Every event up to here was handed to the live watchers; None while there are none.
        self._position: Cursor | None = None
        self._wakeup = asyncio.Event()
        self._also_wake: list[asyncio.Event] = []  # push deliverers, woken by the same NOTIFY
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="event-feed-listener"),
            asyncio.create_task(self._read(), name="event-feed-reader"),
            asyncio.create_task(self._end_watches(), name="event-feed-shutdown"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _end_watches(self) -> None:
        await self._stopping.wait()
        for live in self._live:
            live.ready.set()

    def _wake(self, *_: object) -> None:
        self._wakeup.set()
        for event in self._also_wake:
            event.set()

    def wakes(self, event: asyncio.Event) -> None:
        """Sets `event` on every NOTIFY too (push delivery shares the process's one LISTEN connection)."""
        self._also_wake.append(event)

    async def _listen(self) -> None:
        """Keeps one LISTEN connection open, reconnecting with backoff."""
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(outbox.CHANNEL, self._wake)
                delay = 0.5
                self._wake()  # anything committed while we were not listening
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

    async def _horizon(self) -> outbox.Horizon:
        self._metrics.event_feed_queries.labels("horizon").inc()
        horizon = await outbox.horizon(self._pool)
        self._metrics.event_feed_stall.set(horizon.stall)
        return horizon

    async def head(self) -> Cursor:
        return Cursor((await self._horizon()).tx, 0)

    async def _read(self) -> None:
        """The process's one reader: on each NOTIFY or poll, new events go to every live watcher."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
            self._wakeup.clear()
            if self._position is None:
                self._metrics.event_feed_stall.set(0)
                continue
            try:
                await self._fan_out()
            except Exception as exc:  # the database failed: watchers end and resume elsewhere or later
                log.warning("event feed cannot read; ending live watchers", extra={"error": repr(exc)})
                for live in self._live:
                    live.fail(exc)
                self._metrics.watchers_dropped.labels("error").inc(len(self._live))
                self._live.clear()
                self._position = None

    async def _fan_out(self) -> None:
        horizon = await self._horizon()
        while self._position is not None:
            start = self._position
            self._metrics.event_feed_queries.labels("live").inc()
            batch = await outbox.read_after(self._pool, start, horizon.tx, self._batch)
            if self._position != start:  # every watcher left (and maybe others came) meanwhile
                return
            for live in list(self._live):
                if not live.offer(batch):
                    self._live.discard(live)
                    live.fail()
                    self._metrics.watchers_dropped.labels("slow").inc()
            if not self._live:
                self._position = None
            elif len(batch) == self._batch:
                self._position = batch[-1].cursor
            else:
                self._position = max(start, Cursor(horizon.tx, 0))
                return

    async def send(self, write: Awaitable[object], resume_after: str) -> None:
        """Hands one event (or keep-alive) to a watcher's transport. A client that takes nothing for the write
        timeout has stopped reading: it is cut off (WatcherTooSlow, naming the cursor to resume after) instead of
        holding its place under the watcher cap until TCP gives up on it."""
        try:
            async with asyncio.timeout(self._write_timeout):
                await write
        except TimeoutError:
            self._metrics.watchers_dropped.labels("stalled").inc()
            raise WatcherTooSlow(
                f"this watcher took no data for {self._write_timeout:g} seconds; resume after cursor"
                f" {resume_after or 'of the last event received'}",
                cursor=resume_after,
            ) from None

    @contextlib.asynccontextmanager
    async def watching(
        self, after: Cursor | StartAt, field: str
    ) -> AsyncIterator[AsyncIterator[StoredEvent | None]]:
        """A watcher's place: checked and counted on entry (before the caller starts its stream: a bad cursor
        or a full instance raises here), freed on exit. Yields the events after `after` (a cursor, the end of the
        stream, or before the oldest retained event); see `_watch`."""
        start = await self._start_cursor(after, field)
        if self._watching >= self._max_watchers:
            raise TooManyWatchers(
                f"this instance already serves {self._max_watchers} event watchers; retry later"
            )
        self._watching += 1
        events = self._watch(start)
        try:
            yield events
        finally:
            self._watching -= 1
            await events.aclose()

    async def _start_cursor(self, after: Cursor | StartAt, field: str) -> Cursor:
        """Where a new watcher starts: after `after`, which must lie within the kept stream, at its end, or
        after the newest pruned event (every event after it is kept)."""
        if after is StartAt.EARLIEST:
            self._metrics.event_feed_queries.labels("start").inc()
            return await outbox.pruned_through(self._pool)
        head = await self.head()
        if after is StartAt.NOW:
            return head
        if head < after:
            raise invalid(
                field, f"lies beyond the end of the event stream (now {head}); it was not issued here"
            )
        self._metrics.event_feed_queries.labels("start").inc()
        pruned = await outbox.pruned_through(self._pool)
        if after < pruned:
            raise CursorExpired(
                f"events after cursor {after} are past their retention and were deleted; the oldest cursor"
                f" to resume from is {pruned} (the events between are lost: re-read current state first)",
                oldest_cursor=str(pruned),
            )
        return after

    async def _watch(self, after: Cursor) -> AsyncGenerator[StoredEvent | None, None]:
        """Yields the events after `after`, then live ones, until shutdown. Yields
        None after each quiet poll interval, so a transport can send keep-alives and notice a departed client.
        Raises WatcherTooSlow, naming the cursor to resume from, when the watcher falls too far behind."""
        live: _Live | None = None
        cursor = after
        try:
            while live is None:  # catch up from the table until the reader's position is reached
                position = self._position
                if position is None or position <= cursor:
                    live = _Live(cursor, self._queue_size)
                    self._live.add(live)
                    if position is None:
                        self._position = cursor
                    break
                self._metrics.event_feed_queries.labels("catch_up").inc()
                batch = await outbox.read_between(self._pool, cursor, position, self._batch)
                for event in batch:
                    yield event
                    cursor = event.cursor
                if len(batch) < self._batch:
                    cursor = max(cursor, position)
            while not self._stopping.is_set():
                if live.slow:
                    raise WatcherTooSlow(
                        f"this watcher fell more than {self._queue_size} events behind the live feed;"
                        f" resume after cursor {cursor}",
                        cursor=str(cursor),
                    )
                if live.failure is not None:
                    raise live.failure.with_traceback(None)  # one error ends many watchers
                if live.queue:
                    event = live.queue.popleft()
                    yield event
                    cursor = event.cursor
                    continue
                live.ready.clear()
                try:  # a timer, not a task per wait: this runs for every watcher on every event
                    async with asyncio.timeout(self._poll_interval):
                        await live.ready.wait()
                except TimeoutError:
                    yield None
        finally:
            if live is not None:
                self._live.discard(live)
                if not self._live:
                    self._position = None
