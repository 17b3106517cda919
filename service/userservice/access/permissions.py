"""Which RBAC verb on which resource of the userservice.io group each operation needs. REST routes and gRPC
methods both name their operation here (by its gRPC method name); docs/api.md's table is generated from it."""

from __future__ import annotations

from dataclasses import dataclass, field

GROUP = "userservice.io"


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    subresource: str = ""
    # The SubjectAccessReview cache key part, built once.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.verb} {self.resource}/{self.subresource}")

    @property
    def resource_name(self) -> str:
        """As RBAC rules and `kubectl auth can-i` spell it: users, users/password."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_GET, _LIST, _WATCH = Permission("get", "users"), Permission("list", "users"), Permission("watch", "users")
_CREATE, _UPDATE, _DELETE = (
    Permission("create", "users"),
    Permission("update", "users"),
    Permission("delete", "users"),
)
_PASSWORD = Permission("update", "users", "password")

PERMISSIONS: dict[str, Permission] = {
    "GetUser": _GET,
    "ListUsers": _LIST,
    "WatchUserEvents": _WATCH,
    "CreateUser": _CREATE,
    "BatchCreateUsers": _CREATE,
    "UpdateUser": _UPDATE,
    "UndeleteUser": _UPDATE,
    "DeleteUser": _DELETE,
    "ChangePassword": _PASSWORD,
    "UnlockUser": _PASSWORD,
    "VerifyPassword": Permission("verify", "users"),
    "EraseUser": Permission("erase", "users"),
    "ExportUser": Permission("export", "users"),
}
