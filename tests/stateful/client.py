"""One client for both transports: every operation over REST or gRPC, answered as an `Outcome` whose `kind`
names the documented result the same way for both, so a model can predict it without knowing the transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.json_format import MessageToDict
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

Transport = Literal["rest", "grpc"]
TRANSPORTS: tuple[Transport, ...] = ("rest", "grpc")

# REST problem types and gRPC (code, ErrorInfo reason) pairs, each named as the outcome docs/api.md documents.
_REST_KINDS = {
    "not-found": "not_found",
    "already-exists": "already_exists",
    "created-user-deleted": "created_user_deleted",
    "idempotency-key-reused": "key_reused",
    "precondition-failed": "stale",
    "unauthenticated": "unauthenticated",
    "locked": "locked",
    "invalid-argument": "invalid",
}
_GRPC_KINDS = {
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.ALREADY_EXISTS: "already_exists",
    grpc.StatusCode.ABORTED: "stale",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "locked",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
}
_GRPC_REASONS = {"CREATED_USER_DELETED": "created_user_deleted", "REQUEST_ID_REUSED": "key_reused"}
CALL_SECONDS = 120  # far beyond what any call here takes
T = TypeVar("T")
_USER_FIELDS = ("first_name", "last_name", "nickname", "email", "country", "password", "password_hash")


@dataclass
class Outcome:
    """`kind` is `ok`, a name from _REST_KINDS, or `server_error` / `unexpected:<status>`; `body` is the user
    (or {"users": […]} for a batch) as REST shows it, or the problem."""

    kind: str
    body: dict[str, Any] = field(default_factory=dict)
    status: str = ""
    replayed: bool = False

    def __str__(self) -> str:
        return f"{self.kind} ({self.status}): {self.body}"


def _user_json(user: pb.User) -> dict[str, Any]:
    body = MessageToDict(user, preserving_proto_field_name=True)
    body["version"] = int(body.get("version", 0))
    return body


async def _rest(resp: aiohttp.ClientResponse) -> Outcome:
    text = await resp.text()
    body = await resp.json(content_type=None) if text else {}
    replayed = resp.headers.get("Idempotent-Replayed") == "true"
    if resp.status < 300:
        return Outcome("ok", body, str(resp.status), replayed)
    if resp.status >= 500:
        return Outcome("server_error", body, str(resp.status))
    problem = str(body.get("type", "")).rsplit("/", 1)[-1]
    return Outcome(_REST_KINDS.get(problem, f"unexpected:{resp.status}"), body, str(resp.status))


def _grpc_error(exc: grpc.aio.AioRpcError) -> Outcome:
    code = exc.code()
    body: dict[str, Any] = {"details": exc.details()}
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        return Outcome("server_error", body, code.name)
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            body["reason"] = info.reason
            if info.reason in _GRPC_REASONS:
                return Outcome(_GRPC_REASONS[info.reason], body, code.name)
    return Outcome(_GRPC_KINDS.get(code, f"unexpected:{code.name}"), body, code.name)


def _proto_user(fields: dict[str, Any]) -> pb.User:
    return pb.User(**{k: v for k, v in fields.items() if k in _USER_FIELDS})


class Client:
    """A REST session and a gRPC stub of one service (or one each of two replicas)."""

    def __init__(self, http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub) -> None:
        self.http, self.stub = http, stub

    async def _call(self, transport: Transport, rest: Any, grpc_call: Any) -> Outcome:
        if transport == "rest":
            async with rest() as resp:
                return await _rest(resp)
        try:
            reply = await grpc_call()
        except grpc.aio.AioRpcError as exc:
            return _grpc_error(exc)
        if isinstance(reply, pb.User):
            return Outcome("ok", _user_json(reply), "OK")
        if isinstance(reply, pb.BatchCreateUsersResponse):
            return Outcome("ok", {"users": [_user_json(u) for u in reply.users]}, "OK")
        return Outcome("ok", {}, "OK")

    async def create(self, transport: Transport, user: dict[str, Any], key: str | None = None) -> Outcome:
        return await self._call(
            transport,
            lambda: self.http.post("/v1/users", json=user, headers={"Idempotency-Key": key} if key else None),
            lambda: self.stub.CreateUser(pb.CreateUserRequest(user=_proto_user(user), request_id=key or "")),
        )

    async def batch_create(
        self, transport: Transport, users: list[dict[str, Any]], key: str | None = None
    ) -> Outcome:
        return await self._call(
            transport,
            lambda: self.http.post(
                "/v1/users:batchCreate",
                json={"requests": [{"user": u} for u in users]},
                headers={"Idempotency-Key": key} if key else None,
            ),
            lambda: self.stub.BatchCreateUsers(
                pb.BatchCreateUsersRequest(
                    requests=[pb.CreateUserRequest(user=_proto_user(u)) for u in users], request_id=key or ""
                )
            ),
        )

    async def update(
        self, transport: Transport, user_id: str, changes: dict[str, Any], etag: str | None = None
    ) -> Outcome:
        return await self._call(
            transport,
            lambda: self.http.patch(
                f"/v1/users/{user_id}", json=changes, headers={"If-Match": etag} if etag else None
            ),
            lambda: self.stub.UpdateUser(
                pb.UpdateUserRequest(
                    user=pb.User(id=user_id, etag=etag or "", **changes),
                    update_mask=field_mask_pb2.FieldMask(paths=sorted(changes)),
                )
            ),
        )

    async def delete(self, transport: Transport, user_id: str) -> Outcome:
        return await self._call(
            transport,
            lambda: self.http.delete(f"/v1/users/{user_id}"),
            lambda: self.stub.DeleteUser(pb.DeleteUserRequest(id=user_id)),
        )

    async def undelete(self, transport: Transport, user_id: str) -> Outcome:
        return await self._call(
            transport,
            lambda: self.http.post(f"/v1/users/{user_id}:undelete"),
            lambda: self.stub.UndeleteUser(pb.UndeleteUserRequest(id=user_id)),
        )

    async def erase(self, transport: Transport, user_id: str) -> Outcome:
        return await self._call(
            transport,
            lambda: self.http.post(f"/v1/users/{user_id}:erase"),
            lambda: self.stub.EraseUser(pb.EraseUserRequest(id=user_id)),
        )

    async def verify(self, transport: Transport, login: str, password: str) -> Outcome:
        return await self._call(
            transport,
            lambda: self.http.post("/v1/users:verifyPassword", json={"login": login, "password": password}),
            lambda: self.stub.VerifyPassword(pb.VerifyPasswordRequest(login=login, password=password)),
        )

    async def change_password(self, transport: Transport, user_id: str, current: str, new: str) -> Outcome:
        return await self._call(
            transport,
            lambda: self.http.post(
                f"/v1/users/{user_id}:changePassword",
                json={"current_password": current, "new_password": new},
            ),
            lambda: self.stub.ChangePassword(
                pb.ChangePasswordRequest(id=user_id, current_password=current, new_password=new)
            ),
        )

    async def unlock(self, transport: Transport, user_id: str) -> Outcome:
        return await self._call(
            transport,
            lambda: self.http.post(f"/v1/users/{user_id}:unlock"),
            lambda: self.stub.UnlockUser(pb.UnlockUserRequest(id=user_id)),
        )


# SCIM answers as the same outcomes: 409 uniqueness is already_exists, 412 stale, 404 not_found, 400 invalid.
_SCIM_KINDS = {400: "invalid", 404: "not_found", 409: "already_exists", 412: "stale"}
SCIM_TYPE = "application/scim+json"
_PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _native_view(resource: dict[str, Any]) -> dict[str, Any]:
    """A SCIM User as the native fields the model knows (the version from meta.version, "v<n>")."""
    return {
        "id": resource["id"],
        "nickname": resource["userName"],
        "first_name": resource["name"]["givenName"],
        "last_name": resource["name"]["familyName"],
        "email": resource["emails"][0]["value"],
        "active": resource["active"],
        "version": int(resource["meta"]["version"].strip('"')[1:]),
    }


class Scim:
    """SCIM writes over the REST port, answered as the same Outcomes."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def _send(self, method: str, path: str, body: Any = None, etag: str | None = None) -> Outcome:
        headers = {"Content-Type": SCIM_TYPE, **({"If-Match": etag} if etag else {})}
        data = None if body is None else json.dumps(body)
        async with self.http.request(method, f"/scim/v2{path}", data=data, headers=headers) as resp:
            text = await resp.text()
            answer = await resp.json(content_type=None) if text else {}
        if resp.status < 300:
            return Outcome("ok", _native_view(answer) if answer else {}, str(resp.status))
        if resp.status >= 500:
            return Outcome("server_error", answer, str(resp.status))
        return Outcome(_SCIM_KINDS.get(resp.status, f"unexpected:{resp.status}"), answer, str(resp.status))

    async def create(self, resource: dict[str, Any]) -> Outcome:
        return await self._send("POST", "/Users", resource)

    async def patch(self, user_id: str, operations: list[dict[str, Any]], etag: str | None = None) -> Outcome:
        return await self._send(
            "PATCH", f"/Users/{user_id}", {"schemas": [_PATCH_SCHEMA], "Operations": operations}, etag
        )

    async def delete(self, user_id: str) -> Outcome:
        return await self._send("DELETE", f"/Users/{user_id}")


def run_in(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a call on the service's event loop from a Hypothesis thread (Hypothesis tests are synchronous)."""
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(CALL_SECONDS)
