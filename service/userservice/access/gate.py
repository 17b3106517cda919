"""The one access check of every API call, REST or gRPC: who is calling (TokenReview), may they (SubjectAccessReview).

Both verdicts are cached: a token's under the SHA-256 of the token (never the token) for AUTH_CACHE_SECONDS
but never past the token's own expiry; a permission's per (user, groups, verb, resource) for
AUTH_CACHE_SECONDS. A cache hit is a dict lookup; identical misses share one request to the API server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from typing import Any, Protocol

import orjson

from userservice.access.errors import PermissionDenied, TokenRefused
from userservice.access.permissions import GROUP, Permission
from userservice.access.principal import ANONYMOUS, Principal, authtype_of
from userservice.access.verdicts import Verdicts
from userservice.clients.kubernetes import ACCESS_REVIEWS, TOKEN_REVIEWS, KubeApi, endpoint
from userservice.config import Config, ConfigError

log = logging.getLogger(__name__)

BEARER = "bearer "
# The cached verdict of a token the API server did not accept (a refusal is cached like an acceptance, so a
# flood of one bad token does not reach the API server).
_REFUSED = Principal("", "", (), "refused")


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT's payload, read without verifying anything (TokenReview does that): it only caps
    how long a verdict is cached. None when the token carries none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def token_keep_seconds(cache_seconds: float, expiry: float | None, now: float) -> float:
    """How long an accepted token's verdict may be reused: never past the token's expiry."""
    return cache_seconds if expiry is None else min(cache_seconds, expiry - now)


def bearer_token(authorization: str | None) -> str | None:
    if authorization is None or authorization[:7].lower() != BEARER:
        return None
    return authorization[7:].strip() or None


class Gate:
    """AUTH_MODE=kubernetes."""

    def __init__(
        self, api: KubeApi, audience: str, namespace: str, cache_seconds: float, cache_size: int
    ) -> None:
        self._api, self._audience, self._namespace = api, audience, namespace
        self._cache_seconds = cache_seconds
        self._tokens: Verdicts[Principal] = Verdicts(cache_size)
        self._permissions: Verdicts[bool] = Verdicts(cache_size)

    async def check(self, authorization: str | None, permission: Permission) -> Principal:
        token = bearer_token(authorization)
        if token is None:
            raise TokenRefused(sent=authorization is not None)
        key = hashlib.sha256(token.encode()).digest()
        principal = self._tokens.cached(key)
        if principal is None:
            principal = await self._tokens.load(key, lambda: self._review_token(token))
        if principal is _REFUSED:
            raise TokenRefused(sent=True)
        grant = (principal.key, permission.key)
        allowed = self._permissions.cached(grant)
        if allowed is None:
            allowed = await self._permissions.load(grant, lambda: self._review_access(principal, permission))
        if not allowed:
            raise PermissionDenied(principal.username, permission, self._namespace)
        return principal

    async def _review_token(self, token: str) -> tuple[Principal, float]:
        status = await self._api.create(
            TOKEN_REVIEWS,
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token, "audiences": [self._audience]},
            },
        )
        if not status.get("authenticated") or self._audience not in (status.get("audiences") or ()):
            return _REFUSED, self._cache_seconds
        user: dict[str, Any] = status.get("user") or {}
        username = str(user.get("username", ""))
        principal = Principal(
            username, str(user.get("uid", "")), tuple(user.get("groups") or ()), authtype_of(username)
        )
        return principal, token_keep_seconds(self._cache_seconds, token_expiry(token), time.time())

    async def _review_access(self, principal: Principal, permission: Permission) -> tuple[bool, float]:
        attributes = {
            "namespace": self._namespace,
            "group": GROUP,
            "resource": permission.resource,
            "verb": permission.verb,
        }
        if permission.subresource:
            attributes["subresource"] = permission.subresource
        status = await self._api.create(
            ACCESS_REVIEWS,
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": principal.username,
                    "uid": principal.uid,
                    "groups": list(principal.groups),
                    "resourceAttributes": attributes,
                },
            },
        )
        return bool(status.get("allowed")) and not status.get("denied"), self._cache_seconds

    async def close(self) -> None:
        await self._api.close()


class OpenGate:
    """AUTH_MODE=none: every call is made by the unauthenticated principal."""

    async def check(self, authorization: str | None, permission: Permission) -> Principal:
        return ANONYMOUS

    async def close(self) -> None:
        pass


class Access(Protocol):
    async def check(self, authorization: str | None, permission: Permission) -> Principal: ...

    async def close(self) -> None: ...


def access_for(config: Config) -> Access:
    if config.auth_mode == "none":
        return OpenGate()
    found = endpoint(config.kubeconfig)
    if found is None:
        raise ConfigError("AUTH_MODE=kubernetes needs the in-cluster ServiceAccount (in a pod) or KUBECONFIG")
    return Gate(
        KubeApi(found),
        config.auth_audience,
        config.auth_namespace,
        config.auth_cache_seconds,
        config.auth_cache_size,
    )
