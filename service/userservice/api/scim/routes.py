"""The /scim/v2 sub-application: its routes, its access check and its errors.

Each write goes through the same use case as REST and gRPC (UserCore): one version and one event per write, the
same validation and uniqueness, the same ETag. The caller is authenticated and authorised like any other (the
route's operation, PERMISSIONS, through the app's Access); the discovery resources are open, like /openapi.json.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import orjson
from aiohttp import web

from userservice.access.permissions import PERMISSIONS, Permission
from userservice.api import http
from userservice.api.scim import discovery, filters, patch, resources
from userservice.api.scim.errors import MEDIA_TYPE, ScimError, from_exception, invalid_value, respond
from userservice.domain import search
from userservice.domain.caller import Caller
from userservice.domain.errors import NotFound, PreconditionFailed, excerpt
from userservice.domain.model import User, etag_matches
from userservice.domain.validation import PROVISIONING_OPTIONAL

PREFIX = "/scim/v2"
BODY_TYPES = frozenset({MEDIA_TYPE, "application/json"})
PATCH_ATTEMPTS = 3
"""A PATCH applies its operations to the user it read; if another write came between, it reads and applies again."""
START_INDEX_MAX = 2**31 - 1
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}{PREFIX}"


def _user_id(request: web.Request) -> str:
    """The id in the path: one that is not a UUID names no user (404, as any other id no user has)."""
    text = request.match_info["id"]
    try:
        UUID(text)
    except ValueError:
        raise NotFound(f"user {excerpt(text)} does not exist") from None
    return text


def _caller(request: web.Request) -> Caller:
    principal = request[http.PRINCIPAL]
    return principal.caller(request.remote or "unknown")


async def _body(request: web.Request) -> Any:
    if request.content_type not in BODY_TYPES:
        raise web.HTTPUnsupportedMediaType(
            text=f"Content-Type must be {MEDIA_TYPE} or application/json, not {request.content_type or 'missing'}"
        )
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ScimError(400, f"the body is not valid JSON: {exc.msg}", "invalidSyntax") from None


def _user_response(request: web.Request, user: User, status: int = 200, **headers: str) -> web.Response:
    resource = resources.to_scim(user, _base(request))
    query = request.rel_url.query
    selected = resources.select(resource, query.get("attributes"), query.get("excludedAttributes"))
    return respond(selected, status, {"ETag": user.etag, **headers})


async def create_user(request: web.Request) -> web.Response:
    native = resources.to_native(await _body(request))
    created = await request.config_dict[http.CORE].create(
        native, _caller(request), optional=PROVISIONING_OPTIONAL
    )
    location = f"{_base(request)}/Users/{created.user.id}"
    return _user_response(request, created.user, 201, Location=location)


async def get_user(request: web.Request) -> web.Response:
    user = await request.config_dict[http.CORE].get(_user_id(request))
    if_none_match = request.headers.get("If-None-Match", "")
    if if_none_match.strip() and etag_matches(if_none_match, user.version, "If-None-Match"):
        return web.Response(status=304, headers={"ETag": user.etag})
    return _user_response(request, user)


async def replace_user(request: web.Request) -> web.Response:
    """PUT: every declared attribute as given; an absent optional one takes its default (active true, no
    externalId, no displayName). The password changes only when one is given (it is never returned, so never sent back)."""
    native = resources.to_native(await _body(request))
    missing = [attr for attr, field in (("userName", "nickname"), ("emails", "email")) if field not in native]
    missing += [
        f"name.{sub}"
        for sub, field in (("givenName", "first_name"), ("familyName", "last_name"))
        if field not in native
    ]
    if missing:
        raise invalid_value(f"{', '.join(missing)} required: PUT replaces the whole user")
    native.setdefault("active", True)
    native.setdefault("external_id", None)
    native.setdefault("display_name", None)
    user = await request.config_dict[http.CORE].update(
        _user_id(request), native, _caller(request), request.headers.get("If-Match"), "If-Match"
    )
    return _user_response(request, user)


async def patch_user(request: web.Request) -> web.Response:
    body = await _body(request)
    core, user_id = request.config_dict[http.CORE], _user_id(request)
    if_match = request.headers.get("If-Match")
    for attempt in range(PATCH_ATTEMPTS):
        current = await core.get(user_id)
        if (
            if_match is not None
            and if_match.strip()
            and not etag_matches(if_match, current.version, "If-Match")
        ):
            raise PreconditionFailed(
                f"the user changed since you read it: its current etag is {current.etag}"
            )
        changes = patch.changes(body, current)
        try:
            user = await core.update(user_id, changes, _caller(request), current.etag, "If-Match")
        except PreconditionFailed:
            if attempt + 1 == PATCH_ATTEMPTS:
                raise
            continue
        return _user_response(request, user)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def delete_user(request: web.Request) -> web.Response:
    await request.config_dict[http.CORE].delete(
        _user_id(request), _caller(request), request.headers.get("If-Match"), "If-Match"
    )
    return web.Response(status=204)


def _whole_number(name: str, raw: object) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"\s*-?[0-9]{1,18}\s*", raw):
        return int(raw)
    raise invalid_value(f"{name} must be a whole number")


def _joined(name: str, raw: object) -> str | None:
    """attributes / excludedAttributes: a comma-separated string (query) or a list of strings (search body)."""
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return ",".join(raw)
    raise invalid_value(f"{name} must be a list of attribute names")


async def _search(request: web.Request, params: dict[str, Any]) -> web.Response:
    text = params.get("filter")
    if text is not None and not isinstance(text, str):
        raise filters.invalid_filter("filter must be a string")
    query = filters.parse(text) if text else search.EVERYONE
    # RFC 7644 §3.4.2.4: a startIndex below 1 is 1, a negative count is 0; count is capped at maxResults.
    start = min(max(_whole_number("startIndex", params.get("startIndex")) or 1, 1), START_INDEX_MAX)
    count = _whole_number("count", params.get("count"))
    count = discovery.DEFAULT_COUNT if count is None else min(max(count, 0), discovery.MAX_RESULTS)
    attributes = _joined("attributes", params.get("attributes"))
    excluded = _joined("excludedAttributes", params.get("excludedAttributes"))
    found = await request.config_dict[http.CORE].search(query, start, count)
    base = _base(request)
    page = [resources.select(resources.to_scim(user, base), attributes, excluded) for user in found.users]
    return respond(discovery.list_response(page, found.total, start))


async def list_users(request: web.Request) -> web.Response:
    return await _search(request, dict(request.rel_url.query))


async def search_users(request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body, dict) or discovery.SEARCH_SCHEMA not in (body.get("schemas") or []):
        raise ScimError(
            400, f"a search is a JSON object whose schemas hold {discovery.SEARCH_SCHEMA}", "invalidSyntax"
        )
    return await _search(request, body)


async def service_provider_config(request: web.Request) -> web.Response:
    return respond(discovery.service_provider_config(_base(request)))


async def schemas(request: web.Request) -> web.Response:
    schema = discovery.user_schema(_base(request))
    return respond(discovery.list_response([schema], 1, 1))


async def schema(request: web.Request) -> web.Response:
    if request.match_info["id"] != discovery.USER_SCHEMA:
        raise NotFound(f"no schema {excerpt(request.match_info['id'])}")
    return respond(discovery.user_schema(_base(request)))


async def resource_types(request: web.Request) -> web.Response:
    return respond(discovery.list_response([discovery.user_resource_type(_base(request))], 1, 1))


async def resource_type(request: web.Request) -> web.Response:
    if request.match_info["id"] != "User":
        raise NotFound(f"no resource type {excerpt(request.match_info['id'])}")
    return respond(discovery.user_resource_type(_base(request)))


USER_PATH = "/Users/{id:[^/]+}"
# method, path, handler, the operation whose permission it needs (None: open, like /openapi.json).
ROUTES: tuple[tuple[str, str, Handler, str | None], ...] = (
    ("POST", "/Users", create_user, "CreateUser"),
    ("GET", "/Users", list_users, "ListUsers"),
    ("POST", "/Users/.search", search_users, "ListUsers"),
    ("POST", "/.search", search_users, "ListUsers"),
    ("GET", USER_PATH, get_user, "GetUser"),
    ("PUT", USER_PATH, replace_user, "UpdateUser"),
    ("PATCH", USER_PATH, patch_user, "UpdateUser"),
    ("DELETE", USER_PATH, delete_user, "DeleteUser"),
    ("GET", "/ServiceProviderConfig", service_provider_config, None),
    ("GET", "/Schemas", schemas, None),
    ("GET", "/Schemas/{id}", schema, None),
    ("GET", "/ResourceTypes", resource_types, None),
    ("GET", "/ResourceTypes/{id}", resource_type, None),
)
OPERATIONS: dict[Handler, Permission] = {
    handler: PERMISSIONS[operation] for _, _, handler, operation in ROUTES if operation is not None
}


@web.middleware
async def scim_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The caller's access for the route's operation, then the handler; every error as a SCIM Error."""
    try:
        permission = OPERATIONS.get(request.match_info.handler)
        if permission is not None:
            authorization = request.headers.get("Authorization")
            request[http.PRINCIPAL] = await request.config_dict[http.ACCESS].check(authorization, permission)
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_exception(exc)
    except Exception as exc:
        return from_exception(exc)


def attach(app: web.Application, max_body: int) -> None:
    """Serves SCIM under /scim/v2 of the REST app (its use cases and access are the app's own)."""
    scim = web.Application(middlewares=[scim_errors], client_max_size=max_body)
    for method, path, handler, _ in ROUTES:
        scim.router.add_route(method, path, handler)
    app.add_subapp(PREFIX, scim)
