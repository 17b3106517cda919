"""One exception type per `google.rpc.ErrorInfo` reason the service sends, each with the details a caller acts on.

The service answers every failure with a gRPC status whose details carry an ErrorInfo (domain `userservice.io`)
or, for invalid input, a BadRequest with field violations; a lock adds a RetryInfo. `from_rpc_error` turns such a
status into the matching exception; a status without details (a transport failure, a proxy's answer) becomes the
exception of its code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class UserServiceError(Exception):
    """A call the service refused or could not answer. `code` is the gRPC status code, `reason` the ErrorInfo
    reason ("" when the status had none), `metadata` its metadata, `retry_after` the RetryInfo delay in seconds."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(f"{code.name}: {message}" if not reason else f"{code.name} {reason}: {message}")
        self.code, self.message, self.reason = code, message, reason
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after
        self.violations = tuple(violations)


class NotFound(UserServiceError):
    """USER_NOT_FOUND: no such user (or it is deleted)."""


class AlreadyExists(UserServiceError):
    """ALREADY_EXISTS: `field` (nickname or email) is taken, or, on undelete, the user is not deleted (`id`)."""

    @property
    def field(self) -> str:
        return self.metadata.get("field", "")


class EtagMismatch(UserServiceError):
    """ETAG_MISMATCH: the user changed since the etag sent was read; read it again and retry."""


class InvalidArgument(UserServiceError):
    """INVALID_ARGUMENT: `violations` names each field that is wrong and why."""


class RequestIdReused(UserServiceError):
    """REQUEST_ID_REUSED: the request id was used before with a different request."""


class CreatedUserDeleted(UserServiceError):
    """CREATED_USER_DELETED: the request id was replayed after the user it created was deleted."""


class Unauthenticated(UserServiceError):
    """INVALID_TOKEN: the token is missing, expired or not for this service's audience."""


class WrongCredentials(UserServiceError):
    """WRONG_CREDENTIALS: the login names no user or the password is wrong (one answer for both)."""


class PermissionDenied(UserServiceError):
    """PERMISSION_DENIED: Kubernetes RBAC does not grant the caller `verb` on `resource` in `namespace`."""

    @property
    def verb(self) -> str:
        return self.metadata.get("verb", "")

    @property
    def resource(self) -> str:
        return self.metadata.get("resource", "")

    @property
    def namespace(self) -> str:
        return self.metadata.get("namespace", "")


class Locked(UserServiceError):
    """LOCKED: too many failed password checks; nothing is checked until `retry_after` seconds have passed."""


class Unavailable(UserServiceError):
    """UNAVAILABLE: the service or its database cannot answer now; retry later."""


class AccessReviewUnavailable(Unavailable):
    """ACCESS_REVIEW_UNAVAILABLE: the Kubernetes API could not be asked who the caller is or what it may do."""


class BreachCheckUnavailable(Unavailable):
    """BREACH_CHECK_UNAVAILABLE: the password breach check did not answer and the service fails closed."""


class ResourceExhausted(UserServiceError):
    """RESOURCE_EXHAUSTED without a reason of its own."""


class TooManyWatchers(ResourceExhausted):
    """TOO_MANY_WATCHERS: this instance serves its most event watchers."""


class WatcherTooSlow(ResourceExhausted):
    """WATCHER_TOO_SLOW: the watcher fell too far behind and was cut off; `cursor` is the last event it got."""

    @property
    def cursor(self) -> str:
        return self.metadata.get("cursor", "")


class EventGap(UserServiceError):
    """CURSOR_EXPIRED: events after the cursor were pruned, so resuming would skip some. `oldest_cursor` is where
    the retained stream begins; the caller decides whether to resynchronise from a full listing."""

    @property
    def oldest_cursor(self) -> str:
        return self.metadata.get("oldest_cursor", "")


class DeadlineExceeded(UserServiceError):
    """The call's deadline passed before an answer (retries included)."""


BY_REASON: dict[str, type[UserServiceError]] = {
    "USER_NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "ETAG_MISMATCH": EtagMismatch,
    "INVALID_ARGUMENT": InvalidArgument,
    "REQUEST_ID_REUSED": RequestIdReused,
    "CREATED_USER_DELETED": CreatedUserDeleted,
    "INVALID_TOKEN": Unauthenticated,
    "WRONG_CREDENTIALS": WrongCredentials,
    "PERMISSION_DENIED": PermissionDenied,
    "LOCKED": Locked,
    "ACCESS_REVIEW_UNAVAILABLE": AccessReviewUnavailable,
    "BREACH_CHECK_UNAVAILABLE": BreachCheckUnavailable,
    "TOO_MANY_WATCHERS": TooManyWatchers,
    "WATCHER_TOO_SLOW": WatcherTooSlow,
    "CURSOR_EXPIRED": EventGap,
}

BY_CODE: dict[grpc.StatusCode, type[UserServiceError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: EtagMismatch,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.OUT_OF_RANGE: EventGap,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def from_status(
    code: grpc.StatusCode, message: str, trailing: Sequence[tuple[str, str | bytes]] | None
) -> UserServiceError:
    """The exception for a status and the trailing metadata that carries its details."""
    reason, metadata, retry_after = "", {}, None
    violations: list[FieldViolation] = []
    raw = next((value for key, value in trailing or () if key == _DETAILS_KEY), None)
    if isinstance(raw, bytes):
        for detail in status_pb2.Status.FromString(raw).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                reason = reason or "INVALID_ARGUMENT"
                violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                hint = error_details_pb2.RetryInfo()
                detail.Unpack(hint)
                retry_after = hint.retry_delay.seconds + hint.retry_delay.nanos / 1e9
    kind = BY_REASON.get(reason) or BY_CODE.get(code, UserServiceError)
    return kind(code, message, reason, metadata, retry_after, violations)


def from_rpc_error(exc: grpc.aio.AioRpcError) -> UserServiceError:
    return from_status(exc.code(), exc.details() or "", exc.trailing_metadata())
