"""RFC 9457 problem details: the one shape of every REST error."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from userservice import jsoncodec
from userservice.access.errors import PermissionDenied, TokenRefused
from userservice.clients.kubernetes import AccessUnavailable
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
)
from userservice.domain.events import CursorExpired, StreamRefused, TooManyWatchers, WatcherTooSlow

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://userservice.io/problems/"

# DomainError subclass -> (HTTP status, problem type slug, title)
PROBLEMS: dict[type[DomainError], tuple[int, str, str]] = {
    InvalidArgument: (400, "invalid-argument", "Invalid request"),
    NotFound: (404, "not-found", "Not found"),
    AlreadyExists: (409, "already-exists", "Already exists"),
    PreconditionFailed: (412, "precondition-failed", "Precondition failed"),
    IdempotencyConflict: (422, "idempotency-key-reused", "Idempotency key reused"),
    CreatedUserDeleted: (409, "created-user-deleted", "Created user deleted"),
    CursorExpired: (410, "cursor-expired", "Cursor expired"),
    TooManyWatchers: (503, "too-many-watchers", "Too many watchers"),
    WatcherTooSlow: (503, "watcher-too-slow", "Watcher too slow"),
    Unauthenticated: (401, "unauthenticated", "Unauthenticated"),
    Locked: (429, "locked", "Too many failed attempts"),
    DependencyUnavailable: (503, "dependency-unavailable", "Dependency unavailable"),
    TokenRefused: (401, "unauthenticated", "Unauthenticated"),
    PermissionDenied: (403, "permission-denied", "Permission denied"),
    AccessUnavailable: (503, "access-review-unavailable", "Access review unavailable"),
}
WWW_AUTHENTICATE = 'Bearer realm="userservice"'


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, object] = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    body.update(extensions or {})
    return web.Response(status=status, body=jsoncodec.dumps(body), content_type=PROBLEM_JSON, headers=headers)


def unavailable() -> web.Response:
    return problem(
        503,
        "unavailable",
        "Service unavailable",
        "the database cannot be reached; retry later",
        headers={"Retry-After": "1"},
    )


def internal() -> web.Response:
    return problem(
        500, "internal", "Internal error", "the server failed; the request id names it in the logs"
    )


def from_domain(exc: DomainError) -> web.Response:
    status, slug, title = PROBLEMS[type(exc)]
    errors: list[Mapping[str, str]] | None = None
    if isinstance(exc, InvalidArgument):
        errors = [{"field": v.field, "message": v.description} for v in exc.violations]
        detail = "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
    elif isinstance(exc, AlreadyExists):
        errors = [{"field": exc.field, "message": exc.message}]
        detail = exc.message
    else:
        detail = exc.message
    extensions = exc.positions if isinstance(exc, StreamRefused) else None
    headers = None
    if isinstance(exc, PermissionDenied):
        extensions = exc.details
    elif isinstance(exc, TokenRefused):
        challenge = WWW_AUTHENTICATE + (', error="invalid_token"' if exc.sent else "")
        headers = {"WWW-Authenticate": challenge}
    elif isinstance(exc, TooManyWatchers | AccessUnavailable):
        headers = {"Retry-After": "1"}
    elif isinstance(exc, Locked):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    return problem(status, slug, title, detail, errors=errors, headers=headers, extensions=extensions)


def from_http_error(exc: web.HTTPException) -> web.Response:
    """aiohttp's own 4xx (unknown route, wrong method, body too large …) as problem+json."""
    slug = (exc.reason or "error").lower().replace(" ", "-")
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow"}}
    return problem(exc.status, slug, exc.reason, detail or exc.reason, headers=headers)
