"""Change events as an async iterator that survives reconnects.

The stream remembers the cursor of the last event it yielded. When the connection drops, the server restarts or
cuts the watcher off (UNAVAILABLE, RESOURCE_EXHAUSTED: too many watchers, too slow), or ends the stream, it opens a
new one after that cursor, with the retry policy's backoff (unbounded attempts: a watcher waits out an outage; bound
it with `asyncio.timeout` if it must not). Every event is yielded once and in order. Events the server pruned before
the stream could resume are a gap it cannot bridge: `EventGap` (OUT_OF_RANGE) is raised, with the oldest retained
cursor, for the caller to resynchronise. Before the first event of a stream that started at "now" there is no
cursor yet: a reconnect then starts at "now" again, so changes committed while it was away are not seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc

from userservice_client import errors
from userservice_client import messages as pb
from userservice_client.retry import RETRIED_CODES, RetryPolicy

log = logging.getLogger("userservice_client")

_METHOD = "/userservice.v1.UserService/WatchUserEvents"


class EventStream:
    """`async for event in client.watch_events("earliest")`; `cursor` is the last yielded event's, to store and
    pass as `start` later. Use it as an async context manager, or call `aclose()`, to end the stream."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        start: str,
        metadata: Callable[[bool], list[tuple[str, str]]],
        retry: RetryPolicy,
    ) -> None:
        if not start:
            raise ValueError('start is "now", "earliest" or a cursor')
        self._open = channel.unary_stream(
            _METHOD,
            request_serializer=pb.WatchUserEventsRequest.SerializeToString,
            response_deserializer=pb.UserEvent.FromString,
        )
        self._start, self._metadata, self._retry = start, metadata, retry
        self._call: Any = None
        self._reconnects = 0
        self.cursor: str | None = None

    def __aiter__(self) -> EventStream:
        return self

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def __anext__(self) -> pb.UserEvent:
        while True:
            if self._call is None:
                after = self.cursor or self._start
                self._call = self._open(
                    pb.WatchUserEventsRequest(after_cursor=after), metadata=self._metadata(False)
                )
            try:
                event = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                self._call = None
                error = errors.from_rpc_error(exc)
                if error.code not in RETRIED_CODES:
                    raise error from None
                await self._pause(error.reason or error.code.name, error.retry_after)
                continue
            if event is grpc.aio.EOF:  # the server ended the stream (it is stopping): resume elsewhere
                self._call = None
                await self._pause("end of stream", None)
                continue
            self._reconnects = 0
            self.cursor = event.cursor
            assert isinstance(event, pb.UserEvent)
            return event

    async def _pause(self, why: str, hint: float | None) -> None:
        wait = self._retry.backoff(self._reconnects, hint)
        self._reconnects += 1
        log.info("event stream: %s; resuming after %s in %.3f s", why, self.cursor or self._start, wait)
        await asyncio.sleep(wait)
