"""A minimal Server-Sent Events reader for tests (the service's /v1/events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class SseEvent:
    id: str
    event: str
    data: dict[str, Any]


async def read_events(resp: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    fields: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if "data" in fields:
                yield SseEvent(fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


async def collect_until(
    http: aiohttp.ClientSession,
    marker: object,
    headers: dict[str, str] | None = None,
    connected: asyncio.Event | None = None,
) -> list[SseEvent]:
    """Events up to and including the first whose CloudEvent data has `n` equal to `marker`."""
    async with http.get("/v1/events", headers=headers, timeout=aiohttp.ClientTimeout(total=120)) as resp:
        assert resp.status == 200
        assert await resp.content.readline() == b": connected\n"
        if connected is not None:
            connected.set()
        got: list[SseEvent] = []
        async for event in read_events(resp):
            assert event.event != "error", event.data
            got.append(event)
            if event.data["data"].get("n") == marker:
                return got
    raise AssertionError(f"stream ended after {len(got)} events")
