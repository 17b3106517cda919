"""A bounded cache of verdicts with a lifetime each, and one in-flight lookup per key (a burst of identical
misses asks the Kubernetes API once)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class Verdicts(Generic[V]):
    def __init__(self, size: int) -> None:
        self._size = size
        # key -> (monotonic deadline, verdict); insertion order is age order, so the oldest goes first.
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._flights: dict[Hashable, asyncio.Future[V]] = {}

    def cached(self, key: Hashable) -> V | None:
        """The verdict while it lasts: a dict lookup and a clock read."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    async def load(self, key: Hashable, lookup: Callable[[], Awaitable[tuple[V, float]]]) -> V:
        """The verdict from `lookup` (verdict, seconds to keep it), shared by every caller asking for the same
        key meanwhile. A failed lookup is not cached; every waiter gets its error."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._fill(key, lookup))
            self._flights[key] = flight
            flight.add_done_callback(_retrieve)
        # shield: one waiter giving up (a client that left) does not cancel the others' lookup
        return await asyncio.shield(flight)

    async def _fill(self, key: Hashable, lookup: Callable[[], Awaitable[tuple[V, float]]]) -> V:
        try:
            verdict, keep = await lookup()
        finally:
            del self._flights[key]
        if keep > 0:
            self._entries.pop(key, None)
            while len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (time.monotonic() + keep, verdict)
        return verdict

    def __len__(self) -> int:
        return len(self._entries)


def _retrieve(flight: asyncio.Future[Any]) -> None:
    """Marks a failed lookup's error as seen even when every waiter had left (else asyncio logs it)."""
    if not flight.cancelled():
        flight.exception()
