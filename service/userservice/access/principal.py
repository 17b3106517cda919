"""The authenticated caller, and the context variable that carries it from the gRPC access interceptor to the
servicer (REST keeps it on the request)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

from userservice.domain.caller import Caller

SERVICE_ACCOUNT = "service_account"
USER = "user"
UNAUTHENTICATED = "unauthenticated"


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    uid: str
    groups: tuple[str, ...]
    authtype: str
    # What SubjectAccessReview verdicts are cached under: the same user with the same groups, whatever token.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", "\0".join((self.username, *self.groups)))

    def throttle_key(self, peer: str) -> str:
        """Whom failed password checks are counted against: the caller's identity, or its address without one."""
        return peer if self.authtype == UNAUTHENTICATED else f"principal:{self.username}"

    def caller(self, peer: str) -> Caller:
        """This principal calling from `peer`, as the use cases take it (recorded with its changes' events)."""
        return Caller(self.authtype, self.username, self.throttle_key(peer))


def authtype_of(username: str) -> str:
    return SERVICE_ACCOUNT if username.startswith("system:serviceaccount:") else USER


# AUTH_MODE=none: every call is made by this one.
ANONYMOUS = Principal("", "", (), UNAUTHENTICATED)

# The principal of the gRPC call being served, set by the access interceptor.
current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)
