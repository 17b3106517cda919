"""A minimal Server-Sent Events reader for tests (the service's /v1/events)."""

from __future__ import annotations

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
