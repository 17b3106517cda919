"""Every SCIM answer that is not a resource: the Error schema (RFC 7644 §3.12), one place for every error."""

from __future__ import annotations

import logging

from aiohttp import web

from userservice import jsoncodec
from userservice.access.errors import PermissionDenied, TokenRefused
from userservice.clients.kubernetes import AccessUnavailable
from userservice.domain.errors import (
    AlreadyExists,
    DependencyUnavailable,
    DomainError,
    InvalidArgument,
    Locked,
    NotFound,
    PreconditionFailed,
    Unauthenticated,
)
from userservice.store.db import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
# How the native field names read in SCIM (a validation message names the attribute the caller sent).
ATTRIBUTE_OF_FIELD = {
    "nickname": "userName",
    "first_name": "name.givenName",
    "last_name": "name.familyName",
    "email": "emails",
    "external_id": "externalId",
    "display_name": "displayName",
    "active": "active",
    "password": "password",
    "country": "country",
    "id": "id",
}


class ScimError(Exception):
    """An error the SCIM adapter itself finds (a filter, a PATCH operation, a request body)."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def respond(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=jsoncodec.dumps(body), status=status, content_type=MEDIA_TYPE, headers=headers)


def error(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, object] = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type is not None:
        body["scimType"] = scim_type
    return respond(body, status, headers)


def _domain(exc: DomainError) -> web.Response:
    if isinstance(exc, InvalidArgument):
        detail = "; ".join(
            f"{ATTRIBUTE_OF_FIELD.get(v.field, v.field)}: {v.description}" for v in exc.violations
        )
        return error(400, detail, "invalidValue")
    if isinstance(exc, AlreadyExists):
        attribute = ATTRIBUTE_OF_FIELD.get(exc.field, exc.field)
        return error(409, f"a user with this {attribute} already exists", "uniqueness")
    if isinstance(exc, NotFound):
        return error(404, exc.message)
    if isinstance(exc, PreconditionFailed):
        return error(412, exc.message)
    if isinstance(exc, TokenRefused | Unauthenticated):
        return error(401, exc.message, headers={"WWW-Authenticate": 'Bearer realm="userservice"'})
    if isinstance(exc, PermissionDenied):
        return error(403, exc.message)
    if isinstance(exc, Locked):
        return error(429, exc.message, headers={"Retry-After": str(exc.retry_after_seconds)})
    if isinstance(exc, DependencyUnavailable | AccessUnavailable):
        return error(503, exc.message, headers={"Retry-After": "1"})
    return error(400, exc.message)


def from_exception(exc: Exception) -> web.Response:
    """The SCIM error for anything a SCIM handler raised (logged when it is the server's fault)."""
    if isinstance(exc, ScimError):
        return error(exc.status, exc.detail, exc.scim_type)
    if isinstance(exc, DomainError):
        return _domain(exc)
    if isinstance(exc, web.HTTPException):
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return error(exc.status, detail or exc.reason, headers=headers)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        log.warning("database unavailable", extra={"error": repr(exc)})
        return error(503, "the database cannot be reached; retry later", headers={"Retry-After": "1"})
    log.exception("unhandled error", exc_info=exc)
    return error(500, "the server failed; the request id names it in the logs")
