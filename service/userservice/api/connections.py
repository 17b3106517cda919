"""The REST server's connections: deadlines for slow or silent clients, a cap on open connections, and
malformed HTTP answered with problem+json and logged quietly.

aiohttp (pinned) times out neither a connection that never sends a request nor one that drips its headers,
and answers a request it cannot parse in text/plain with an ERROR log line and traceback each: a flood an
attacker controls. These subclasses of its server and protocol close both gaps; test_hostile_connections.py
holds them to it over raw sockets.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from userservice.api import problem
from userservice.domain.errors import excerpt
from userservice.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float  # from the connection's first byte (or its opening) to a complete request head
    idle_timeout: float  # a keep-alive connection with no request in flight
    max_connections: int


# A fixed answer for a connection over the cap: written before the request is read, then the socket closes.
_OVER_CAP = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)
_OVER_CAP_BODY = (
    b'{"type":"' + problem.TYPE_BASE.encode() + b'too-many-connections","title":"Too many connections",'
    b'"status":503,"detail":"the server has too many open connections; retry shortly"}'
)


class _Protocol(RequestHandler):
    """One HTTP connection: aiohttp's, plus a deadline for each request head."""

    def __init__(self, manager: _Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._head_deadline: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None  # the body of the newest request head

    def _arm(self) -> None:
        self._head_deadline = self._loop.call_later(self._guard.limits.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport is not None:
            self._guard.metrics.http_connections_closed.labels("header_timeout").inc()
            log.debug("closed a connection that sent no complete request head in time")
            self.force_close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def _process_keepalive(self) -> None:  # aiohttp's idle (keep-alive) deadline: counted when it closes
        was_open = not self._force_close
        super()._process_keepalive()
        if was_open and self._force_close:
            self._guard.metrics.http_connections_closed.labels("idle_timeout").inc()

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        super().data_received(data)
        if self._request_count > heads:
            self._disarm()
            self._body = self._messages[-1][1] if self._messages else None
        elif data and self._head_deadline is None and self._awaiting_head():
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def _awaiting_head(self) -> bool:
        """Whether bytes now can only be a new request head: no request queued or served, and the last body
        read to its end (a body arriving before its handler starts is not a head)."""
        body_done = self._body is None or self._body.is_eof()
        return body_done and not self._messages and not self._request_in_progress

    async def _handle_request(self, request: BaseRequest, *args: Any) -> tuple[web.StreamResponse, bool]:
        self._disarm()  # a request being served has its head: however long it takes, the head deadline is over
        return await super()._handle_request(request, *args)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # a fault of ours: keep aiohttp's logging and answer
            return super().handle_error(request, status, exc, message)
        # The client's fault, and as frequent as it likes: one line without a traceback, like the access log.
        lines = (message or "").strip().splitlines()
        reason = lines[0] if lines else "malformed request"
        self._guard.metrics.http_connections_closed.labels("malformed").inc()
        log.info("malformed HTTP request", extra={"status": status, "error": excerpt(reason)})
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent")
        response = problem.problem(
            status,
            "malformed-request",
            "Malformed request",
            f"not a well-formed HTTP request: {excerpt(reason)}",
        )
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's connection manager, with a cap on open connections and gauges of them."""

    def __init__(self, *args: Any, limits: ConnectionLimits, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits, self.metrics = limits, metrics
        self._open = 0

    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, keepalive_timeout=self.limits.idle_timeout, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._open += 1
        self.metrics.http_connections_open.set(self._open)
        if self._open > self.limits.max_connections:
            self.metrics.http_connections_closed.labels("cap").inc()
            transport.write(_OVER_CAP % (len(_OVER_CAP_BODY), _OVER_CAP_BODY))
            handler.force_close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._open -= 1
        self.metrics.http_connections_open.set(self._open)


class GuardedRunner(web.AppRunner):
    def __init__(
        self, app: web.Application, limits: ConnectionLimits, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._limits, self._metrics = limits, metrics

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # aiohttp's, configured from the app: rebuilt as a _Server
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            limits=self._limits,
            metrics=self._metrics,
            **made._kwargs,
        )
