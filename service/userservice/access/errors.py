"""Access refusals, mapped by each adapter like every other domain error."""

from __future__ import annotations

from userservice.access.permissions import GROUP, Permission
from userservice.domain.errors import DomainError


class TokenRefused(DomainError):
    """No bearer token, or one the Kubernetes API does not accept for this service's audience."""

    def __init__(self, sent: bool) -> None:
        super().__init__(
            "the bearer token is not valid for this service (expired, revoked, or for another audience)"
            if sent
            else "a bearer token is required: send a Kubernetes ServiceAccount token for this service's audience"
        )
        self.sent = sent


class PermissionDenied(DomainError):
    """RBAC does not grant the caller the operation's verb on its resource."""

    def __init__(self, username: str, permission: Permission, namespace: str) -> None:
        super().__init__(
            f"{username} may not {permission.verb} {permission.resource_name} "
            f"(group {GROUP}) in namespace {namespace}"
        )
        self.details = {
            "verb": permission.verb,
            "resource": permission.resource_name,
            "group": GROUP,
            "namespace": namespace,
        }
