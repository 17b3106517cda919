"""A real webhook receiver over loopback for push delivery tests: an aiohttp server that checks every request's
Standard Webhooks signature with the `standardwebhooks` package (what a team's receiver would use), records
what arrived, and answers as a test plans it (failures, Retry-After, slowness), per path.

`Receiver.events(path)` are the CloudEvents accepted (2xx) in arrival order; `attempts(path)` every request,
verified or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

Plan = Callable[["Arrival"], Awaitable[web.Response | None] | web.Response | None]


@dataclass
class Arrival:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # monotonic
    verified: bool
    event: dict[str, Any] | None = None
    status: int = 0


@dataclass
class Receiver:
    keys: dict[str, list[str]] = field(default_factory=dict)  # path -> accepted whsec_ keys
    plans: dict[str, Plan] = field(default_factory=dict)  # path -> answer (None: 204)
    arrivals: list[Arrival] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _runner: web.AppRunner | None = None
    port: int = 0

    def verify(self, path: str, headers: dict[str, str], body: bytes) -> bool:
        for key in self.keys.get(path, []):
            try:
                Webhook(key).verify(body, headers, json_parse=False)
                return True
            except WebhookVerificationError:
                continue
        return False

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        arrival = Arrival(
            request.path, headers, body, time.monotonic(), self.verify(request.path, headers, body)
        )
        self.arrivals.append(arrival)
        try:
            response: web.Response | None = None
            if not arrival.verified:
                response = web.Response(status=401, text="bad signature")
            elif (plan := self.plans.get(request.path)) is not None:
                answer = plan(arrival)
                response = await answer if asyncio.iscoroutine(answer) else answer  # type: ignore[assignment]
            response = response or web.Response(status=204)
            arrival.status = response.status
            if 200 <= response.status < 300:
                arrival.event = json.loads(body)
            return response
        finally:
            self.changed.set()

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def stop(self) -> None:
        """Closes the listener: connections are refused until `start` again (same port)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def attempts(self, path: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.path == path]

    def events(self, path: str) -> list[dict[str, Any]]:
        return [a.event for a in self.attempts(path) if a.event is not None]

    async def wait(self, check: Callable[[], bool], within: float = 60) -> None:
        """Waits until `check()` holds (re-checked on each arrival and every half second)."""
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"receiver: condition not met after {within}s; {len(self.arrivals)} arrivals"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)
