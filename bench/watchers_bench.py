"""Event watchers beside the request load: `count` SSE streams held open (and read) from a thread of the bench
process, optionally with a steady trickle of creates, while wrk measures GET in its own process."""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType

import aiohttp

from tests.support.users import new_user


class Watchers:
    """A context manager: on entry `count` streams are connected (every later commit reaches them)."""

    def __init__(self, base_url: str, count: int, creates_per_second: float = 0.0) -> None:
        self._url, self._count, self._rate = base_url, count, creates_per_second
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-watchers", daemon=True)
        self._stop = asyncio.Event()
        self._connected = threading.Event()
        self._task: asyncio.Future[None] | None = None
        self.events = 0
        self.created = 0
        self.errors = 0

    def __enter__(self) -> Watchers:
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        if not self._connected.wait(60):
            raise RuntimeError(f"{self._count} event streams did not connect")
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        assert self._task is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._task.result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(base_url=self._url, connector=connector) as http:
            streams = []
            for _ in range(self._count):
                resp = await http.get("/v1/events", timeout=aiohttp.ClientTimeout(total=None))
                if resp.status != 200 or await resp.content.readline() != b": connected\n":
                    raise RuntimeError(f"event stream refused: {resp.status}")
                streams.append(resp)
            readers = [asyncio.create_task(self._read(resp)) for resp in streams]
            writer = asyncio.create_task(self._write(http)) if self._rate else None
            self._connected.set()
            await self._stop.wait()
            for task in [*readers, *([writer] if writer else [])]:
                task.cancel()
            await asyncio.gather(*readers, *([writer] if writer else []), return_exceptions=True)
            for resp in streams:
                resp.close()

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        async for line in resp.content:
            if line.startswith(b"id: "):
                self.events += 1

    async def _write(self, http: aiohttp.ClientSession) -> None:
        """Creates at a steady rate, each on its own schedule so a slow one does not hold the next back."""
        pending: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        try:
            for n in range(1_000_000):
                await asyncio.sleep(max(0.0, start + n / self._rate - time.monotonic()))
                task = asyncio.create_task(self._create(http))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:  # creates still in flight when the measurement ends are not counted
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _create(self, http: aiohttp.ClientSession) -> None:
        async with http.post("/v1/users", json=new_user()) as resp:
            if resp.status == 201:
                self.created += 1
            else:
                self.errors += 1
