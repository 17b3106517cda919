"""The async client: one typed method per RPC of userservice.v1.UserService, over one grpcio aio channel.

A `Client` is also a session: it keeps the newest consistency token its writes received and sends it with its
reads, so it reads its own writes whichever replica serves them. `new_session()` gives another session on the same
channel (a session per request handler, say, when writes of one handler must not hold back reads of another).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.message import Message

from userservice_client import errors
from userservice_client import messages as pb
from userservice_client.credentials import TokenFile, tls_credentials
from userservice_client.events import EventStream
from userservice_client.retry import RetryPolicy

log = logging.getLogger("userservice_client")

SERVICE = "userservice.v1.UserService"
CONSISTENCY_KEY = "x-consistency-token"
DEFAULT_DEADLINE = 10.0
_Response = TypeVar("_Response", bound=Message)


@dataclass
class _Session:
    token: str | None = None
    position: int | None = None

    def note(self, token: str) -> None:
        """Keeps the newest token: tokens of the service's version-1 encoding carry a WAL position and are
        compared by it (replies to concurrent writes can arrive out of order); any other is taken as newest."""
        position = _position(token)
        if position is None or self.position is None or position >= self.position:
            self.token, self.position = token, position


def _position(token: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw[1:], "big") if len(raw) == 9 and raw[0] == 1 else None


class Client:
    """Calls the service at `target` (host:port). `token_file` is the projected ServiceAccount token (read again
    when it changes); `ca_file` turns on TLS with that CA bundle. `deadline` bounds each call in seconds, retries
    included, unless the call passes its own `deadline`."""

    def __init__(
        self,
        target: str,
        *,
        token_file: str | os.PathLike[str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        tls_server_name: str | None = None,
        deadline: float = DEFAULT_DEADLINE,
        retry: RetryPolicy | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        if channel is None:
            options = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
            channel = (
                grpc.aio.secure_channel(target, tls_credentials(ca_file), options=options)
                if ca_file is not None
                else grpc.aio.insecure_channel(target, options=options)
            )
        self._channel = channel
        self._tokens = TokenFile(token_file) if token_file is not None else None
        self._deadline, self._retry = deadline, retry or RetryPolicy()
        self._session = _Session()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def new_session(self) -> Client:
        """A client on the same channel with a consistency session of its own."""
        other = object.__new__(Client)
        other.__dict__.update(self.__dict__)
        other._session = _Session()
        return other

    @property
    def consistency_token(self) -> str | None:
        """The newest consistency token this session received (sent with its reads)."""
        return self._session.token

    # -- the plumbing of every unary call ------------------------------------------------------------------------

    def _metadata(self, read: bool) -> list[tuple[str, str]]:
        metadata = [self._tokens.metadata()] if self._tokens is not None else []
        if read and self._session.token is not None:
            metadata.append((CONSISTENCY_KEY, self._session.token))
        return metadata

    async def _unary(
        self,
        method: str,
        request: Message,
        response: type[_Response],
        *,
        retried: bool,
        read: bool = False,
        deadline: float | None = None,
    ) -> _Response:
        """Calls `method`; when `retried`, again on UNAVAILABLE and RESOURCE_EXHAUSTED as the retry policy says,
        within one deadline. A request id, where the method takes one, is in `request` and so the same on every
        attempt."""
        call = self._channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        loop = asyncio.get_running_loop()
        end = loop.time() + (self._deadline if deadline is None else deadline)
        retry = 0
        while True:
            remaining = end - loop.time()
            if remaining <= 0:
                raise errors.DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"{method}: deadline passed")
            pending = call(request, metadata=self._metadata(read), timeout=remaining)
            try:
                reply: _Response = await pending
            except grpc.aio.AioRpcError as exc:
                error = errors.from_rpc_error(exc)
                wait = self._retry.delay(retry, error) if retried else None
                if wait is None or loop.time() + wait >= end:
                    raise error from None
                log.info(
                    "retrying %s after %s in %.3f s (retry %d)",
                    method,
                    error.reason or error.code.name,
                    wait,
                    retry + 1,
                )
                await asyncio.sleep(wait)
                retry += 1
                continue
            for key, value in await pending.trailing_metadata() or ():
                if key == CONSISTENCY_KEY and isinstance(value, str):
                    self._session.note(value)
            return reply

    # -- reads: retried, and sent with the session's consistency token -------------------------------------------

    async def get_user(self, user_id: str, *, deadline: float | None = None) -> pb.User:
        return await self._unary(
            "GetUser", pb.GetUserRequest(id=user_id), pb.User, retried=True, read=True, deadline=deadline
        )

    async def list_users(
        self,
        *,
        filter: str = "",  # the API's own name (AIP-160)
        page_size: int = 0,
        page_token: str = "",
        show_deleted: bool = False,
        order_by: str = "",
        deadline: float | None = None,
    ) -> pb.ListUsersResponse:
        """One page; `next_page_token` is empty on the last. `iter_users` walks every page."""
        request = pb.ListUsersRequest(
            filter=filter,
            page_size=page_size,
            page_token=page_token,
            show_deleted=show_deleted,
            order_by=order_by,
        )
        return await self._unary(
            "ListUsers", request, pb.ListUsersResponse, retried=True, read=True, deadline=deadline
        )

    async def iter_users(
        self,
        *,
        filter: str = "",
        page_size: int = 0,
        show_deleted: bool = False,
        order_by: str = "",
    ) -> AsyncIterator[pb.User]:
        token = ""
        while True:
            page = await self.list_users(
                filter=filter,
                page_size=page_size,
                page_token=token,
                show_deleted=show_deleted,
                order_by=order_by,
            )
            for user in page.users:
                yield user
            token = page.next_page_token
            if not token:
                return

    async def export_user(self, user_id: str, *, deadline: float | None = None) -> pb.ExportUserResponse:
        return await self._unary(
            "ExportUser",
            pb.ExportUserRequest(id=user_id),
            pb.ExportUserResponse,
            retried=True,
            read=True,
            deadline=deadline,
        )

    # -- creates: a request id of the client's, the same on every retry, so a retry never creates twice ----------

    async def create_user(
        self, user: pb.User, *, request_id: str | None = None, deadline: float | None = None
    ) -> pb.User:
        """Creates `user`. Without `request_id` the client makes one; pass your own to make a create that outlives
        this process (a job that may run twice) idempotent too."""
        request = pb.CreateUserRequest(user=user, request_id=request_id or _request_id())
        return await self._unary("CreateUser", request, pb.User, retried=True, deadline=deadline)

    async def batch_create_users(
        self, users: Sequence[pb.User], *, request_id: str | None = None, deadline: float | None = None
    ) -> pb.BatchCreateUsersResponse:
        """Creates all of `users` or none (each with a password, or the password_hash of another system)."""
        request = pb.BatchCreateUsersRequest(
            requests=[pb.CreateUserRequest(user=user) for user in users],
            request_id=request_id or _request_id(),
        )
        return await self._unary(
            "BatchCreateUsers", request, pb.BatchCreateUsersResponse, retried=True, deadline=deadline
        )

    # -- other writes: idempotent ones are retried, the rest are not (a retry could apply them twice) -------------

    async def update_user(
        self, user: pb.User, update_mask: Sequence[str] = (), *, deadline: float | None = None
    ) -> pb.User:
        """Updates the fields named in `update_mask` of the user `user.id`; with `user.etag` set, fails with
        EtagMismatch when the user changed meanwhile. Not retried: read again and decide."""
        request = pb.UpdateUserRequest(
            user=user, update_mask=field_mask_pb2.FieldMask(paths=list(update_mask))
        )
        return await self._unary("UpdateUser", request, pb.User, retried=False, deadline=deadline)

    async def delete_user(self, user_id: str, *, etag: str = "", deadline: float | None = None) -> None:
        await self._unary(
            "DeleteUser",
            pb.DeleteUserRequest(id=user_id, etag=etag),
            empty_pb2.Empty,
            retried=False,
            deadline=deadline,
        )

    async def undelete_user(self, user_id: str, *, etag: str = "", deadline: float | None = None) -> pb.User:
        return await self._unary(
            "UndeleteUser",
            pb.UndeleteUserRequest(id=user_id, etag=etag),
            pb.User,
            retried=False,
            deadline=deadline,
        )

    async def erase_user(self, user_id: str, *, deadline: float | None = None) -> None:
        await self._unary(
            "EraseUser", pb.EraseUserRequest(id=user_id), empty_pb2.Empty, retried=False, deadline=deadline
        )

    async def verify_password(self, login: str, password: str, *, deadline: float | None = None) -> pb.User:
        """The user whose login (email or nickname) and password these are; WrongCredentials if none, Locked
        (with retry_after) after too many failures. Not retried: every attempt counts against the lock."""
        request = pb.VerifyPasswordRequest(login=login, password=password)
        return await self._unary("VerifyPassword", request, pb.User, retried=False, deadline=deadline)

    async def change_password(
        self, user_id: str, current_password: str, new_password: str, *, deadline: float | None = None
    ) -> pb.User:
        request = pb.ChangePasswordRequest(
            id=user_id, current_password=current_password, new_password=new_password
        )
        return await self._unary("ChangePassword", request, pb.User, retried=False, deadline=deadline)

    async def unlock_user(self, user_id: str, *, deadline: float | None = None) -> pb.User:
        """Clears the failed-check count and lock: the same result however often it runs, so it is retried."""
        return await self._unary(
            "UnlockUser", pb.UnlockUserRequest(id=user_id), pb.User, retried=True, deadline=deadline
        )

    # -- events ---------------------------------------------------------------------------------------------------

    def watch_events(self, start: str = "now") -> EventStream:
        """Change events from `start`: "now" (changes committed from the time the stream opens), "earliest"
        (every retained event first) or a cursor a previous stream yielded (`UserEvent.cursor`). The stream
        reconnects on its own and resumes after the last event it yielded; see EventStream."""
        return EventStream(self._channel, start, self._metadata, self._retry)


def _request_id() -> str:
    return f"usc-{uuid.uuid4()}"


__all__ = ["Client"]
