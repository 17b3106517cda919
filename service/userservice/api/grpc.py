"""The gRPC adapter: userservice.v1.UserService over UserCore, with google.rpc error details."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from userservice import logs
from userservice.access import principal as principals
from userservice.access.errors import PermissionDenied, TokenRefused
from userservice.access.gate import Access
from userservice.access.permissions import PERMISSIONS
from userservice.api import consistency
from userservice.clients.kubernetes import AccessUnavailable
from userservice.core.batch import BatchCore
from userservice.core.common import check_idempotency_key
from userservice.core.credentials import Credentials
from userservice.core.feed import EventFeed
from userservice.core.users import UserCore
from userservice.domain.caller import Caller
from userservice.domain.errors import (
    AlreadyExists,
    CreatedUserDeleted,
    DependencyUnavailable,
    DomainError,
    IdempotencyConflict,
    InvalidArgument,
    Locked,
    NotFound,
    PreconditionFailed,
    Unauthenticated,
    excerpt,
    invalid,
)
from userservice.domain.events import (
    CursorExpired,
    StartAt,
    StoredEvent,
    StreamRefused,
    TooManyWatchers,
    WatcherTooSlow,
    parse_start,
)
from userservice.domain.fields import FIELDS_BY_NAME, READ_ONLY_FIELDS
from userservice.domain.listing import parse_filter, parse_order_by
from userservice.domain.model import User
from userservice.metrics import Metrics
from userservice.store.db import UNAVAILABLE_ERRORS
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["UserService"].full_name
ERROR_DOMAIN = "userservice.io"
STATUS_MESSAGE_MAX = 1024  # a status message stays readable however much input a caller echoes into it

# DomainError subclass -> (gRPC code, ErrorInfo reason)
STATUS_CODES: dict[type[DomainError], tuple[grpc.StatusCode, str]] = {
    InvalidArgument: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    NotFound: (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND"),
    AlreadyExists: (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS"),
    PreconditionFailed: (grpc.StatusCode.ABORTED, "ETAG_MISMATCH"),
    IdempotencyConflict: (grpc.StatusCode.FAILED_PRECONDITION, "REQUEST_ID_REUSED"),
    CreatedUserDeleted: (grpc.StatusCode.FAILED_PRECONDITION, "CREATED_USER_DELETED"),
    Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, "WRONG_CREDENTIALS"),
    Locked: (grpc.StatusCode.RESOURCE_EXHAUSTED, "LOCKED"),
    DependencyUnavailable: (grpc.StatusCode.UNAVAILABLE, "BREACH_CHECK_UNAVAILABLE"),
    CursorExpired: (grpc.StatusCode.OUT_OF_RANGE, "CURSOR_EXPIRED"),
    TooManyWatchers: (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHERS"),
    WatcherTooSlow: (grpc.StatusCode.RESOURCE_EXHAUSTED, "WATCHER_TOO_SLOW"),
    TokenRefused: (grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN"),
    PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
    AccessUnavailable: (grpc.StatusCode.UNAVAILABLE, "ACCESS_REVIEW_UNAVAILABLE"),
}


def _status(exc: DomainError) -> status_pb2.Status:
    code, reason = STATUS_CODES[type(exc)]
    status = status_pb2.Status(code=code.value[0], message=exc.message)
    if isinstance(exc, InvalidArgument):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in exc.violations
        ]
        status.message = "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=violations))
    else:
        metadata = {"field": exc.field} if isinstance(exc, AlreadyExists) else {}
        if isinstance(exc, StreamRefused):
            metadata = exc.positions
        elif isinstance(exc, PermissionDenied):
            metadata = exc.details
        status.details.add().Pack(
            error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
        )
    if isinstance(exc, Locked):
        status.details.add().Pack(
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=exc.retry_after_seconds))
        )
    if len(status.message) > STATUS_MESSAGE_MAX:
        status.message = status.message[: STATUS_MESSAGE_MAX - 1] + "…"
    return status


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request whose bytes are not the method's message."""

    reason: str


class RequestGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc] # grpc is untyped
    """Caller faults on every service of the server, answered quietly and with the right code.

    A request that does not decode is INVALID_ARGUMENT: grpc answers a deserializer's DecodeError with UNKNOWN
    ("Unexpected <class ...>"); here the deserializer hands the method a stand-in instead, which the wrapped
    method refuses before it runs. A method a servicer leaves unimplemented (grpc.health.v1's List) is
    UNIMPLEMENTED without grpc's ERROR log and traceback, which any caller could repeat at will.
    """

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer

        def deserialize(raw: bytes) -> object:
            try:
                return decode(raw)
            except DecodeError as exc:
                return _Undecodable(str(exc))

        if handler.response_streaming:
            return handler._replace(
                request_deserializer=deserialize, unary_stream=_guarded(handler.unary_stream, _refuse)
            )
        return handler._replace(
            request_deserializer=deserialize, unary_unary=_guarded(handler.unary_unary, _refuse)
        )


class AccessGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc] # grpc is untyped
    """The caller's token and RBAC permission for every UserService method (PERMISSIONS, the same check as the
    REST middleware's); health and reflection are open."""

    def __init__(self, access: Access, metrics: Metrics) -> None:
        self._access, self._metrics = access, metrics

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").partition("/")
        permission = PERMISSIONS.get(method) if service == SERVICE_NAME else None
        if handler is None or permission is None:
            return handler
        access, metrics = self._access, self._metrics

        async def check(request: object, context: grpc.aio.ServicerContext) -> None:
            authorization = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    authorization = value
                    break
            try:
                principals.current.set(await access.check(authorization, permission))
            except DomainError as exc:
                metrics.grpc_requests.labels(method, STATUS_CODES[type(exc)][0].name).inc()
                await context.abort_with_status(rpc_status.to_status(_status(exc)))

        if handler.response_streaming:
            return handler._replace(unary_stream=_guarded(handler.unary_stream, check))
        return handler._replace(unary_unary=_guarded(handler.unary_unary, check))


async def _refuse(request: object, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, _Undecodable):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request message does not decode: {excerpt(request.reason)}",
        )


def _guarded(
    behaviour: Callable[..., Any], before: Callable[[object, grpc.aio.ServicerContext], Awaitable[None]]
) -> Callable[..., Any]:
    """The method, after `before` (which aborts the call to refuse it)."""
    if inspect.isasyncgenfunction(behaviour):  # a stream that yields its responses

        async def stream(request: object, context: grpc.aio.ServicerContext) -> AsyncIterator[object]:
            await before(request, context)
            responses = behaviour(request, context)
            try:
                async for response in responses:
                    yield response
            finally:  # closing this stream closes the method's at once (its cleanup runs now, not at GC)
                await responses.aclose()

        return stream

    async def call(request: object, context: grpc.aio.ServicerContext) -> object:  # unary, or context.write
        await before(request, context)
        try:
            return await behaviour(request, context)
        except NotImplementedError:  # what a generated servicer base raises for a method not overridden
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this method is not implemented")
            raise  # not reached: abort raises

    return call


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    # Exact integer arithmetic on the timedelta, and a third of the time of Timestamp.FromDatetime (pure
    # Python), which a page of 50 users calls 100 times.
    delta = value - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def to_proto(user: User) -> pb.User:
    message = pb.User(
        id=str(user.id),
        first_name=user.first_name,
        last_name=user.last_name,
        nickname=user.nickname,
        email=user.email,
        country=user.country or "",
        active=user.active,
        external_id=user.external_id or "",
        display_name=user.display_name or "",
        created_at=_timestamp(user.created_at),
        updated_at=_timestamp(user.updated_at),
        version=user.version,
        etag=user.etag,
    )
    if user.delete_time is not None and user.purge_time is not None:
        message.delete_time.CopyFrom(_timestamp(user.delete_time))
        message.purge_time.CopyFrom(_timestamp(user.purge_time))
    return message


def _event_to_proto(event: StoredEvent, source: str) -> pb.UserEvent:
    user = event.data.get("user")  # absent from events that carry no personal data
    return pb.UserEvent(
        id=str(event.id),
        source=source,
        type=event.type,
        subject=str(event.subject),
        time=_timestamp(event.time),
        user=None if user is None else to_proto(User.from_public(user)),
        changed_fields=event.data.get("changed_fields", []),
        cursor=str(event.cursor),
        erased=event.data.get("erased", False),
        authtype=event.authtype or "",
        authid=event.authid or "",
    )


def _input_fields(user: pb.User, names: list[str] | tuple[str, ...]) -> dict[str, object]:
    """The named fields of a request's User as the input mapping the core validates. An unset scalar is
    absent (so 'is required' is reported); a read-only field that is set is passed on to be refused."""
    body: dict[str, object] = {}
    for name in names:
        if name == "active":
            if user.HasField("active"):
                body[name] = user.active
        elif name in FIELDS_BY_NAME:
            value = getattr(user, name)
            if value != "":
                body[name] = value
    for name in READ_ONLY_FIELDS:
        if name != "etag" and name in names:
            present = (
                user.HasField(name) if name in {"created_at", "updated_at"} else bool(getattr(user, name))
            )
            if present:
                body[name] = str(getattr(user, name))
    if user.password_hash:  # input only, and only to BatchCreateUsers: elsewhere validation refuses it
        body["password_hash"] = user.password_hash
    return body


class _Call:
    """Request id, metrics and error mapping around one call, unary or streaming."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext, metrics: Metrics) -> None:
        self._method, self._context, self._metrics = method, context, metrics

    async def __aenter__(self) -> None:
        metadata = dict(self._context.invocation_metadata() or ())
        if consistency.METADATA_KEY in metadata:
            try:
                consistency.check(metadata[consistency.METADATA_KEY], consistency.METADATA_KEY)
            except InvalidArgument as exc:
                self._metrics.grpc_call_done(self._method, grpc.StatusCode.INVALID_ARGUMENT.name, 0.0)
                await self._context.abort_with_status(rpc_status.to_status(_status(exc)))
        rid = logs.accepted_request_id(metadata.get("x-request-id"))
        self._token = logs.request_id.set(rid)
        self._started = time.perf_counter()

    async def __aexit__(
        self, _type: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        code = grpc.StatusCode.OK
        try:
            if isinstance(exc, DomainError):
                status = _status(exc)
                code = STATUS_CODES[type(exc)][0]
                await self._context.abort_with_status(rpc_status.to_status(status))
            elif isinstance(exc, asyncio.CancelledError):
                code = grpc.StatusCode.CANCELLED
            elif isinstance(exc, UNAVAILABLE_ERRORS):
                code = grpc.StatusCode.UNAVAILABLE
                log.warning("database unavailable", extra={"method": self._method, "error": repr(exc)})
                await self._context.abort(code, "the database cannot be reached; retry later")
            elif isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error", extra={"method": self._method}, exc_info=exc)
                await self._context.abort(code, "the server failed; the request id names it in the logs")
        finally:
            logs.request_id.reset(self._token)
            self._metrics.grpc_call_done(self._method, code.name, time.perf_counter() - self._started)


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    """Who the call is from, as the use cases take it."""
    principal = principals.current.get() or principals.ANONYMOUS
    return principal.caller(peer_address(context.peer()))


def peer_address(peer: str) -> str:
    """The caller's address from a gRPC peer string (`ipv4:10.0.0.7:5501`, `ipv6:[::1]:5501`), without the
    port, which changes with every connection."""
    kind, _, rest = peer.partition(":")
    if kind in {"ipv4", "ipv6"}:
        host = rest.rpartition(":")[0]
        return host.strip("[]") or rest
    return peer


class UserServiceServicer(pb_grpc.UserServiceServicer):
    def __init__(
        self,
        core: UserCore,
        credentials: Credentials,
        batch: BatchCore,
        feed: EventFeed,
        metrics: Metrics,
        event_source: str,
    ) -> None:
        self._core, self._feed = core, feed
        self._metrics, self._source = metrics, event_source
        self._credentials, self._batch = credentials, batch

    def _call(self, method: str, context: grpc.aio.ServicerContext) -> _Call:
        return _Call(method, context, self._metrics)

    async def CreateUser(self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        async with self._call("CreateUser", context):
            key = check_idempotency_key(request.request_id, "request_id") if request.request_id else None
            body = _input_fields(request.user, [*FIELDS_BY_NAME, *READ_ONLY_FIELDS])
            created = await self._core.create(body, _caller(context), key)
            return to_proto(created.user)

    async def GetUser(self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        async with self._call("GetUser", context):
            return to_proto(await self._core.get(request.id))

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        async with self._call("UpdateUser", context):
            paths = list(request.update_mask.paths)
            unknown = [p for p in paths if p not in FIELDS_BY_NAME and p not in READ_ONLY_FIELDS]
            if unknown:
                raise invalid(
                    "update_mask",
                    f"unknown field {excerpt(unknown[0])}; updatable: {', '.join(FIELDS_BY_NAME)}",
                )
            if not paths:
                paths = [
                    name
                    for name in FIELDS_BY_NAME
                    if (request.user.HasField(name) if name == "active" else getattr(request.user, name))
                ]
            body = _input_fields(request.user, paths)
            for name in paths:  # a masked field left empty means "set it to empty": let validation refuse it
                if name in ("external_id", "display_name"):
                    body.setdefault(name, getattr(request.user, name) or None)  # empty clears it
                elif name in FIELDS_BY_NAME:
                    body.setdefault(name, getattr(request.user, name))
            user = await self._core.update(
                request.user.id, body, _caller(context), request.user.etag or None, etag_field="user.etag"
            )
            return to_proto(user)

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        async with self._call("DeleteUser", context):
            await self._core.delete(request.id, _caller(context), request.etag or None)
            return empty_pb2.Empty()

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        async with self._call("ListUsers", context):
            # proto3 cannot tell 0 from unset: 0 means the default page size.
            list_filter = replace(
                parse_filter(request.filter),
                show_deleted=request.show_deleted,
                descending=parse_order_by(request.order_by),
            )
            page = await self._core.list(list_filter, request.page_size or None, request.page_token or None)
            return pb.ListUsersResponse(
                users=[to_proto(u) for u in page.users], next_page_token=page.next_page_token
            )

    async def BatchCreateUsers(
        self, request: pb.BatchCreateUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchCreateUsersResponse:
        async with self._call("BatchCreateUsers", context):
            key = check_idempotency_key(request.request_id, "request_id") if request.request_id else None
            nested = [f"requests[{i}].request_id" for i, r in enumerate(request.requests) if r.request_id]
            if nested:
                raise invalid(nested[0], "set request_id on the batch request, not on its items")
            body = {
                "requests": [
                    {"user": _input_fields(r.user, [*FIELDS_BY_NAME, *READ_ONLY_FIELDS])}
                    for r in request.requests
                ]
            }
            created = await self._batch.create(body, _caller(context), key)
            return pb.BatchCreateUsersResponse(users=[to_proto(user) for user in created.users])

    async def VerifyPassword(
        self, request: pb.VerifyPasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.User:
        async with self._call("VerifyPassword", context):
            body = {"login": request.login, "password": request.password}
            user = await self._credentials.verify(body, caller=_caller(context))
            return to_proto(user)

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.User:
        async with self._call("ChangePassword", context):
            body = {"current_password": request.current_password, "new_password": request.new_password}
            user = await self._credentials.change_password(request.id, body, caller=_caller(context))
            return to_proto(user)

    async def UnlockUser(self, request: pb.UnlockUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        async with self._call("UnlockUser", context):
            return to_proto(await self._credentials.unlock(request.id))

    async def WatchUserEvents(
        self, request: pb.WatchUserEventsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        gauge = self._metrics.watchers.labels("grpc")
        async with self._call("WatchUserEvents", context):
            field = "after_cursor"
            after = parse_start(request.after_cursor, field) if request.after_cursor else StartAt.NOW
            async with self._feed.watching(after, field) as events:
                # Initial metadata goes out once the start is fixed: a client that has it sees every later
                # commit.
                await context.send_initial_metadata(())
                gauge.inc()
                cursor = ""
                try:
                    async for event in events:
                        if event is not None:  # written, not yielded: a client that stops reading is cut off
                            await self._feed.send(context.write(_event_to_proto(event, self._source)), cursor)
                            cursor = str(event.cursor)
                finally:
                    gauge.dec()

    async def UndeleteUser(
        self, request: pb.UndeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.User:
        async with self._call("UndeleteUser", context):
            return to_proto(await self._core.undelete(request.id, _caller(context), request.etag or None))

    async def EraseUser(
        self, request: pb.EraseUserRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        async with self._call("EraseUser", context):
            await self._core.erase(request.id, _caller(context))
            return empty_pb2.Empty()

    async def ExportUser(
        self, request: pb.ExportUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportUserResponse:
        async with self._call("ExportUser", context):
            export = await self._core.export(request.id)
            return pb.ExportUserResponse(
                user=None if export.user is None else to_proto(export.user),
                events=[_event_to_proto(event, self._source) for event in export.events],
            )
