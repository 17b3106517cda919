"""POSTs one signed CloudEvent to a subscription's sink, behind the sink guard.

The guard: every address a sink's host resolves to is checked (domain.subscriptions.address_refused) by the
connector's resolver, on every new connection (no DNS cache, so a name cannot be re-pointed between the check
and the connect), and an IP literal is checked before the request. Redirects are never followed (a 3xx is a
refusal like any non-2xx), at most MAX_RESPONSE_BYTES of an answer are read (a larger one closes the
connection), and each attempt has a total timeout.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from userservice.domain.subscriptions import (
    SINK_REFUSED,
    SINK_REJECTING,
    SINK_UNREACHABLE,
    Network,
    address_refused,
    shown_url,
)

MAX_RESPONSE_BYTES = 65536
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"  # CloudEvents HTTP binding, structured mode


class SinkRefused(OSError):
    """The sink resolves to an address the guard refuses."""


class _GuardedResolver(AbstractResolver):
    def __init__(self, cluster: tuple[Network, ...], outside_allowed: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._cluster, self._outside = cluster, outside_allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            if why := address_refused(ipaddress.ip_address(entry["host"]), self._cluster, self._outside):
                raise SinkRefused(f"{host} resolves to {why}")
        return found

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class Attempt:
    """How one POST went: `status` the HTTP status (None: no answer); `reason` and `message` describe a
    failure (reason is Ready's), `retry_after` the answer's Retry-After header."""

    status: int | None
    reason: str = ""
    message: str = ""
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender:
    """One HTTP client for one subscription's sink (the guard depends on its spec)."""

    def __init__(self, url: str, cluster: tuple[Network, ...], outside_allowed: bool) -> None:
        self.url = url
        self._shown = shown_url(url)
        self._cluster, self._outside = cluster, outside_allowed
        self._session: aiohttp.ClientSession | None = None
        # The URL and the guard are fixed per Sender: an IP literal is checked once.
        self._refused = _literal_refused(url, cluster, outside_allowed)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=_GuardedResolver(self._cluster, self._outside), use_dns_cache=False, limit=100
                ),
                auto_decompress=False,
            )
        return self._session

    async def post(self, body: bytes, headers: dict[str, str], within: float) -> Attempt:
        if why := self._refused:
            return Attempt(None, SINK_REFUSED, f"{self._shown}: {why}")
        try:
            async with self._client().post(
                self.url,
                data=body,
                headers={**headers, "Content-Type": CONTENT_TYPE},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=within),
            ) as response:
                await _drain(response)
                if 200 <= response.status < 300:
                    return Attempt(response.status)
                note = " (redirects are not followed)" if 300 <= response.status < 400 else ""
                return Attempt(
                    response.status,
                    SINK_REJECTING,
                    f"{self._shown} answered {response.status}{note}",
                    response.headers.get("Retry-After"),
                )
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, SinkRefused):
                return Attempt(None, SINK_REFUSED, f"{self._shown}: {exc.os_error}")
            return Attempt(None, SINK_UNREACHABLE, f"{self._shown}: cannot connect ({exc.os_error.strerror})")
        except TimeoutError:
            return Attempt(None, SINK_UNREACHABLE, f"{self._shown}: no answer within {within:g} seconds")
        except (aiohttp.ClientError, OSError) as exc:
            return Attempt(None, SINK_UNREACHABLE, f"{self._shown}: {type(exc).__name__}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _literal_refused(url: str, cluster: tuple[Network, ...], outside_allowed: bool) -> str | None:
    """Why the guard refuses a sink whose host is an IP literal; None for an allowed one or a name (the resolver
    checks names on every connection)."""
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return address_refused(address, cluster, outside_allowed)


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Reads at most MAX_RESPONSE_BYTES of the answer: a connection whose answer was read whole goes back to
    the pool, a longer answer's is closed."""
    left = MAX_RESPONSE_BYTES
    while left > 0:
        chunk = await response.content.read(left)
        if not chunk:
            return
        left -= len(chunk)
    if not response.content.at_eof():
        response.close()
