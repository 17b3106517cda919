"""The REST adapter: aiohttp routes over UserCore, problem+json errors, metrics, request ids, SSE events."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from userservice import jsoncodec, logs
from userservice.access import principal as principals
from userservice.access.gate import Access
from userservice.access.permissions import PERMISSIONS, Permission
from userservice.api import consistency, openapi, problem
from userservice.core.batch import BatchCore
from userservice.core.common import check_idempotency_key
from userservice.core.credentials import Credentials
from userservice.core.feed import EventFeed
from userservice.core.health import Health
from userservice.core.users import UserCore
from userservice.domain.caller import Caller
from userservice.domain.errors import DomainError, invalid
from userservice.domain.events import StartAt, StoredEvent, WatcherTooSlow, parse_start
from userservice.domain.listing import filter_from_query
from userservice.domain.model import etag_matches
from userservice.metrics import Metrics
from userservice.store.db import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CORE = web.AppKey("core", UserCore)
CREDENTIALS = web.AppKey("credentials", Credentials)
BATCH = web.AppKey("batch", BatchCore)
BATCH_MAX_BODY = web.AppKey("batch_max_body", int)
FEED = web.AppKey("feed", EventFeed)
HEALTH = web.AppKey("health", Health)
METRICS = web.AppKey("metrics", Metrics)
EVENT_SOURCE = web.AppKey("event_source", str)
ACCESS = web.AppKey("access", Access)
PRINCIPAL = web.RequestKey("principal", principals.Principal)
ACCESS_LOG = web.AppKey("access_log", logs.AccessSampling)
EVERY_REQUEST = logs.AccessSampling()

LIST_PARAMS = frozenset(
    {
        "country",
        "nickname",
        "email",
        "created_after",
        "created_before",
        "page_size",
        "page_token",
        "show_deleted",
        "email_prefix",
        "nickname_prefix",
        "last_name_prefix",
        "order_by",
    }
)
JSON_TYPES = frozenset({"application/json"})
MERGE_PATCH_TYPES = frozenset({"application/merge-patch+json", "application/json"})
KEEPALIVE_SECONDS = 15.0
# A user id never holds ':', so /v1/users/{id}:verb (AIP-136 custom methods) is not read as a user id.
USER_PATH = "/v1/users/{id:[^/:]+}"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=jsoncodec.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _route_of(request: web.Request) -> str:
    route = request.match_info.route
    return route.resource.canonical if route.resource is not None else "unmatched"


def _problem_for(exc: Exception) -> web.Response:
    """The problem+json answer to an error a handler raised (logged when it is the server's fault)."""
    if isinstance(exc, DomainError):
        return problem.from_domain(exc)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        log.warning("database unavailable", extra={"error": repr(exc)})
        return problem.unavailable()
    log.exception("unhandled error", exc_info=exc)
    return problem.internal()


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one middleware of every request: request id, the caller's token and RBAC permission for the route's
    operation (OPERATIONS; routes without one, /openapi.json and unknown paths, are open), metrics and the
    access log (ACCESS_LOG_SAMPLE); converts every error to problem+json."""
    rid = logs.accepted_request_id(request.headers.get("X-Request-ID"))
    token = logs.request_id.set(rid)
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        if consistency.HEADER in request.headers:  # checked with or without replicas: one rule for clients
            consistency.check(request.headers[consistency.HEADER], consistency.HEADER)
        permission = OPERATIONS.get(request.match_info.handler)
        if permission is not None:
            request[PRINCIPAL] = await request.app[ACCESS].check(
                request.headers.get("Authorization"), permission
            )
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem.from_http_error(exc)
    except Exception as exc:
        response = _problem_for(exc)
    finally:
        logs.request_id.reset(token)
    if not response.prepared:
        response.headers["X-Request-ID"] = rid
    elapsed = time.perf_counter() - started
    route = _route_of(request)
    app = request.app
    app[METRICS].http_request_done(request.method, route, response.status, elapsed)
    if route not in {"/healthz", "/readyz", "/metrics"} and app.get(ACCESS_LOG, EVERY_REQUEST).keeps(
        request.method, response.status, elapsed
    ):
        caller = request.get(PRINCIPAL)
        log.info(
            "request",
            extra={
                "request_id": rid,
                "principal": None if caller is None else caller.username,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
    return response


def _caller(request: web.Request) -> Caller:
    """Who the request is from, as the use cases take it."""
    principal: principals.Principal = request[PRINCIPAL]
    return principal.caller(request.remote or "unknown")


async def _read_at_most(request: web.Request, max_bytes: int) -> bytes:
    """The body, for a route allowed more than the app's client_max_size; 413 past max_bytes."""
    chunks, size = [], 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(
    request: web.Request, allowed_types: frozenset[str], max_bytes: int | None = None
) -> dict[str, Any]:
    if request.content_type not in allowed_types:
        raise web.HTTPUnsupportedMediaType(
            text=f"Content-Type must be {' or '.join(sorted(allowed_types))}, not {request.content_type or 'missing'}"
        )
    # request.read() raises 413 past client_max_size
    raw = await request.read() if max_bytes is None else await _read_at_most(request, max_bytes)
    try:
        text = raw.decode("utf-8")
        # orjson, not json: strict RFC 8259 (no NaN, no lone surrogates), a nesting limit instead of a
        # RecursionError, and no int-digit limit to trip over (huge numbers are refused as numbers).
        body = orjson.loads(text)
    except UnicodeDecodeError:
        raise invalid("body", "must be UTF-8 encoded JSON") from None
    except orjson.JSONDecodeError as exc:
        raise invalid(
            "body", f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    return body


def _user_response(
    user_json: dict[str, Any], status: int = 200, extra: dict[str, str] | None = None
) -> web.Response:
    headers = {"ETag": user_json["etag"], **(extra or {})}
    return _json(user_json, status=status, headers=headers)


async def create_user(request: web.Request) -> web.Response:
    body = await _json_body(request, JSON_TYPES)
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        check_idempotency_key(key, "Idempotency-Key")
    created = await request.app[CORE].create(body, _caller(request), key)
    headers = {"Location": f"/v1/users/{created.user.id}"}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _user_response(created.user.public(), status=201, extra=headers)


async def get_user(request: web.Request) -> web.Response:
    user = await request.app[CORE].get(request.match_info["id"])
    if_none_match = request.headers.get("If-None-Match", "")
    if if_none_match.strip() and etag_matches(if_none_match, user.version, "If-None-Match"):
        return web.Response(status=304, headers={"ETag": user.etag})
    return _user_response(user.public())


async def patch_user(request: web.Request) -> web.Response:
    body = await _json_body(request, MERGE_PATCH_TYPES)
    user = await request.app[CORE].update(
        request.match_info["id"],
        body,
        _caller(request),
        request.headers.get("If-Match"),
        etag_field="If-Match",
    )
    return _user_response(user.public())


async def delete_user(request: web.Request) -> web.Response:
    await request.app[CORE].delete(
        request.match_info["id"], _caller(request), request.headers.get("If-Match"), etag_field="If-Match"
    )
    return web.Response(status=204)


async def verify_password(request: web.Request) -> web.Response:
    body = await _json_body(request, JSON_TYPES)
    user = await request.app[CREDENTIALS].verify(body, caller=_caller(request))
    return _user_response(user.public())


async def batch_create_users(request: web.Request) -> web.Response:
    body = await _json_body(request, JSON_TYPES, request.app[BATCH_MAX_BODY])
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        check_idempotency_key(key, "Idempotency-Key")
    created = await request.app[BATCH].create(body, _caller(request), key)
    headers = {"Idempotent-Replayed": "true"} if created.replayed else None
    return _json({"users": [user.public() for user in created.users]}, headers=headers)


async def change_password(request: web.Request) -> web.Response:
    body = await _json_body(request, JSON_TYPES)
    user = await request.app[CREDENTIALS].change_password(
        request.match_info["id"], body, caller=_caller(request)
    )
    return _user_response(user.public())


async def unlock_user(request: web.Request) -> web.Response:
    user = await request.app[CREDENTIALS].unlock(request.match_info["id"])
    return _user_response(user.public())


def _page_size(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not re.fullmatch(r"-?[0-9]{1,9}", raw.strip()):
        raise invalid("page_size", "must be a whole number")
    return int(raw)


async def list_users(request: web.Request) -> web.Response:
    query = request.rel_url.query
    unknown = sorted(set(query) - LIST_PARAMS)
    if unknown:
        raise invalid(
            unknown[0], f"is not a query parameter of this list; use {', '.join(sorted(LIST_PARAMS))}"
        )
    repeated = sorted(k for k in set(query) if len(query.getall(k)) > 1)
    if repeated:
        raise invalid(repeated[0], "may be given only once")
    page = await request.app[CORE].list(
        filter_from_query(query), _page_size(query.get("page_size")), query.get("page_token")
    )
    return _json({"users": [u.public() for u in page.users], "next_page_token": page.next_page_token})


class SseFrames:
    """Each event's SSE frame, encoded once however many watchers send it: the live fan-out hands every watcher
    the same event objects, so a frame is looked up by the object itself (held here, so its id is not reused
    while cached). Events read for one watcher alone (catching up) are new objects and encoded for it."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._frames: dict[int, tuple[StoredEvent, bytes]] = {}

    def frame(self, event: StoredEvent, source: str) -> bytes:
        cached = self._frames.get(id(event))
        if cached is not None and cached[0] is event:
            return cached[1]
        payload = jsoncodec.dumps(event.cloud_event(source))
        frame = f"id: {event.cursor}\nevent: {event.type}\ndata: ".encode() + payload + b"\n\n"
        self._frames[id(event)] = (event, frame)
        if len(self._frames) > self._size:
            del self._frames[next(iter(self._frames))]  # the oldest
        return frame


FRAMES = web.AppKey("sse_frames", SseFrames)


def _start_cursor(request: web.Request) -> tuple[str, str] | None:
    """The client's resume position and the field it came in, if any."""
    if request.headers.get("Last-Event-ID"):
        return request.headers["Last-Event-ID"], "Last-Event-ID"
    after = request.rel_url.query.getall("after", [])
    if len(after) > 1:
        raise invalid("after", "may be given only once")
    return (after[0], "after") if after else None


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events; resumes after `Last-Event-ID` (or ?after=: a cursor, `now` or `earliest`) when given.

    Errors before the first byte are ordinary problem+json responses. Once the stream has started, an error
    ends it the SSE way: an `error` event whose data is the problem, then the end of the response, so an
    EventSource reconnects with the last id it saw.
    """
    start = _start_cursor(request)
    app = request.app
    # Fixed (and checked) before the first byte goes out: once a client reads ": connected", every later
    # commit reaches it.
    after = parse_start(*start) if start else StartAt.NOW
    feed = app[FEED]
    async with feed.watching(after, start[1] if start else "") as events:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(b": connected\n\n")
        source, frames = app[EVENT_SOURCE], app[FRAMES]
        gauge = app[METRICS].watchers.labels("sse")
        gauge.inc()
        last_write, cursor = time.monotonic(), ""
        try:
            async for event in events:
                if event is None:
                    if request.transport is None or request.transport.is_closing():
                        break  # the client left: free its place under the watcher cap now
                    if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                        await feed.send(response.write(b": keepalive\n\n"), cursor)
                        last_write = time.monotonic()
                    continue
                await feed.send(response.write(frames.frame(event, source)), cursor)
                last_write, cursor = time.monotonic(), str(event.cursor)
        except ConnectionResetError:
            pass  # the client went away
        except Exception as exc:
            error = _problem_for(exc)
            assert isinstance(error.body, bytes)
            response.force_close()
            try:
                await feed.send(response.write(b"event: error\ndata: " + error.body + b"\n\n"), cursor)
                await response.write_eof()
            except (WatcherTooSlow, ConnectionResetError):
                if request.transport is not None:  # it reads nothing: close without a word
                    request.transport.abort()
        finally:
            gauge.dec()
    return response


async def healthz(_: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    reason = await request.app[HEALTH].check_ready()
    request.app[METRICS].ready.set(0 if reason else 1)
    if reason:
        return _json({"status": "unavailable", "reason": reason}, status=503)
    return _json({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(request.app[METRICS].registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi_document(_: web.Request) -> web.Response:
    return _json(openapi.document())


async def undelete_user(request: web.Request) -> web.Response:
    user = await request.app[CORE].undelete(
        request.match_info["id"], _caller(request), request.headers.get("If-Match"), etag_field="If-Match"
    )
    return _user_response(user.public())


async def erase_user(request: web.Request) -> web.Response:
    await request.app[CORE].erase(request.match_info["id"], _caller(request))
    return web.Response(status=204)


async def export_user(request: web.Request) -> web.Response:
    export = await request.app[CORE].export(request.match_info["id"])
    source = request.app[EVENT_SOURCE]
    return _json(
        {
            "user": None if export.user is None else export.user.public(),
            "events": [event.cloud_event(source) for event in export.events],
        }
    )


# Every API route: method, path, handler and the operation it is (named as the gRPC method that does the same,
# so its permission is PERMISSIONS[operation]); None: open to everyone. AIP-136 custom methods: `:verb` follows
# the collection or the id, never a path segment of its own.
ROUTES: tuple[tuple[str, str, Handler, str | None], ...] = (
    ("POST", "/v1/users", create_user, "CreateUser"),
    ("GET", "/v1/users", list_users, "ListUsers"),
    ("GET", USER_PATH, get_user, "GetUser"),
    ("PATCH", USER_PATH, patch_user, "UpdateUser"),
    ("DELETE", USER_PATH, delete_user, "DeleteUser"),
    ("POST", "/v1/users:verifyPassword", verify_password, "VerifyPassword"),
    ("POST", "/v1/users:batchCreate", batch_create_users, "BatchCreateUsers"),
    ("POST", USER_PATH + ":changePassword", change_password, "ChangePassword"),
    ("POST", USER_PATH + ":unlock", unlock_user, "UnlockUser"),
    ("POST", USER_PATH + ":undelete", undelete_user, "UndeleteUser"),
    ("POST", USER_PATH + ":erase", erase_user, "EraseUser"),
    ("GET", USER_PATH + ":export", export_user, "ExportUser"),
    ("GET", "/v1/events", stream_events, "WatchUserEvents"),
    ("GET", "/openapi.json", openapi_document, None),
)
OPERATIONS: dict[Handler, Permission] = {
    handler: PERMISSIONS[operation] for _, _, handler, operation in ROUTES if operation is not None
}


def rest_operations() -> dict[str, list[str]]:
    """Each operation's REST routes, as the docs spell them (`GET /v1/users/{id}`)."""
    found: dict[str, list[str]] = {}
    for method, path, _, operation in ROUTES:
        if operation is not None:
            found.setdefault(operation, []).append(f"{method} {path.replace(USER_PATH, '/v1/users/{id}')}")
    return found


def build_management_app(health: Health, metrics_: Metrics) -> web.Application:
    """/healthz, /readyz and /metrics on their own port: the API port can be fenced without blinding the kubelet
    or Prometheus. Never authenticated."""
    app = web.Application(middlewares=[observe])
    app[HEALTH], app[METRICS] = health, metrics_
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    return app


def build_app(
    access: Access,
    core: UserCore,
    credentials: Credentials,
    batch: BatchCore,
    feed: EventFeed,
    metrics_: Metrics,
    event_source: str,
    max_body: int,
    batch_max_body: int,
    consistency_tokens: bool = False,
    access_log: logs.AccessSampling = EVERY_REQUEST,
) -> web.Application:
    """`consistency_tokens`: issue and honour read-your-writes tokens (only worth a middleware with replicas).
    `access_log`: which requests get an access line."""
    middlewares = [observe, *([consistency.rest_tokens] if consistency_tokens else [])]
    app = web.Application(middlewares=middlewares, client_max_size=max_body)
    app[ACCESS_LOG], app[FRAMES] = access_log, SseFrames()
    app[CORE], app[CREDENTIALS], app[BATCH], app[BATCH_MAX_BODY] = core, credentials, batch, batch_max_body
    app[FEED], app[METRICS], app[EVENT_SOURCE], app[ACCESS] = feed, metrics_, event_source, access
    for method, path, handler, _ in ROUTES:
        app.router.add_route(method, path, handler)
    return app
