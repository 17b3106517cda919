"""Consistency tokens on the wire, for both adapters: a write's reply carries one, a read may present one.

REST: the `X-Consistency-Token` response header of a write (any method but GET/HEAD), accepted as a request header
on reads. gRPC: the `x-consistency-token` trailing metadata of a write (any method but Get/List/Search/Export/
Watch), accepted as request metadata. The token itself is domain/consistency.py's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from userservice.domain import consistency
from userservice.domain.errors import InvalidArgument

HEADER = "X-Consistency-Token"
METADATA_KEY = "x-consistency-token"
_READ_METHODS = frozenset({"GET", "HEAD"})
_GRPC_READS = ("Get", "List", "Search", "Export", "Watch")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check(token: str, field: str) -> None:
    """Refuses what is not a token this service issued (400 / INVALID_ARGUMENT naming `field`), also where no
    replicas serve reads and the token is not needed: a client learns the rule wherever it runs."""
    consistency.read_position(token, field)


@web.middleware
async def rest_tokens(request: web.Request, handler: Handler) -> web.StreamResponse:
    read_after = consistency.read_position(request.headers.get(HEADER), HEADER)
    with consistency.scope(read_after, records_writes=request.method not in _READ_METHODS) as state:
        response = await handler(request)
    if state.written is not None and not response.prepared:
        response.headers[HEADER] = consistency.encode(state.written)
    return response


class GrpcTokens(grpc.aio.ServerInterceptor):  # type: ignore[misc] # grpc is untyped
    """Opens the request's consistency scope around each unary method of `service`."""

    def __init__(self, service: str) -> None:
        self._prefix = f"/{service}/"

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or not method.startswith(self._prefix) or handler.unary_unary is None:
            return handler
        writes = not method.removeprefix(self._prefix).startswith(_GRPC_READS)
        behaviour = handler.unary_unary

        async def call(request: object, context: grpc.aio.ServicerContext) -> object:
            sent = dict(context.invocation_metadata() or ()).get(METADATA_KEY)
            try:
                read_after = consistency.read_position(sent, METADATA_KEY)
            except InvalidArgument as exc:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "; ".join(f"{v.field}: {v.description}" for v in exc.violations),
                )
            with consistency.scope(read_after, records_writes=writes) as state:
                response = await behaviour(request, context)
            if state.written is not None:
                context.set_trailing_metadata(((METADATA_KEY, consistency.encode(state.written)),))
            return response

        return handler._replace(unary_unary=call)
