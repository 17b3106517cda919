"""The OpenAPI 3.1 document, built from the domain's field list so the schema and the validation agree.

A test checks that every route the app serves is documented here and nothing else is.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from userservice.core.common import IDEMPOTENCY_KEY_MAX
from userservice.domain.batch import BATCH_MAX
from userservice.domain.events import EVENT_TYPES
from userservice.domain.fields import FIELDS_BY_NAME, WRITABLE_FIELDS
from userservice.domain.listing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from userservice.domain.login import CANDIDATE_MAX

PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}


def _idempotency_key(also: str = "") -> dict[str, Any]:
    """The optional Idempotency-Key header of a create; `also` completes what a replay can answer."""
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
        "description": "Retrying with the same key and body returns the first response; with a different body, "
        + ("422; " + also if also else "422."),
    }


def _user_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"ETag": {"schema": {"type": "string"}, "description": "The user's version tag."}},
        "content": {"application/json": {"schema": _ref("User")}},
    }


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "An ETag from an earlier response (or * or a list of them); the request fails with 412 if "
    "the user changed since, 400 if the value is not an entity-tag list.",
}
# How a created user's id feeds the other operations (used by clients and by schemathesis' stateful phase).
_USER_LINKS = {
    name: {"operationId": op, "parameters": {"id": "$response.body#/id"}}
    for name, op in (("GetUser", "getUser"), ("UpdateUser", "updateUser"), ("DeleteUser", "deleteUser"))
}
_LOCKED = {
    **_problem("Locked after too many failed password checks; nothing was checked."),
    "headers": {
        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until the lock ends."}
    },
}
_COMMON_ERRORS = {
    "400": _problem("Invalid input; `errors` lists each field."),
    "404": _problem("No such user."),
}


def _schemas() -> dict[str, Any]:
    writable = {f.name: {**f.json_schema, "description": f.description} for f in WRITABLE_FIELDS}
    readable = {name: schema for name, schema in writable.items() if not schema.get("writeOnly")}
    # A user provisioned over SCIM may have no country.
    readable["country"] = {**readable["country"], "type": ["string", "null"]}
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "User": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                **readable,
                "created_at": timestamp,
                "updated_at": timestamp,
                "version": {"type": "integer", "minimum": 1},
                "etag": {"type": "string"},
                "delete_time": {**timestamp, "description": "Only on a deleted user: when it was deleted."},
                "purge_time": {
                    **timestamp,
                    "description": "Only on a deleted user: when it is purged for good (no undelete after).",
                },
            },
            "required": ["id", *readable, "created_at", "updated_at", "version", "etag"],
        },
        "UserCreate": {
            "type": "object",
            "properties": writable,
            "required": [f.name for f in WRITABLE_FIELDS if not f.optional],
            "additionalProperties": False,
        },
        "UserPatch": {
            "type": "object",
            "description": "JSON merge patch (RFC 7396): only the given fields change; null clears external_id and is refused "
            "for every other field.",
            "properties": writable,
            "additionalProperties": False,
        },
        "VerifyPassword": {
            "type": "object",
            "properties": {
                "login": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The user's email address (case-insensitive) or nickname.",
                },
                "password": {"type": "string", "minLength": 1, "maxLength": CANDIDATE_MAX, "writeOnly": True},
            },
            "required": ["login", "password"],
            "additionalProperties": False,
        },
        "UserImport": {
            "type": "object",
            "description": "A user to create in a batch: with a password, or the password_hash it had elsewhere.",
            "properties": {
                **writable,
                "password_hash": {
                    "type": "string",
                    "maxLength": 512,
                    "writeOnly": True,
                    "description": "argon2 PHC string, bcrypt ($2b$), or passlib's scrypt or PBKDF2-SHA256 format.",
                },
            },
            "required": [name for name in writable if name != "password"],
            "additionalProperties": False,
        },
        "BatchCreateUsers": {
            "type": "object",
            "properties": {
                "requests": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": BATCH_MAX,
                    "items": {
                        "type": "object",
                        "properties": {"user": _ref("UserImport")},
                        "required": ["user"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["requests"],
            "additionalProperties": False,
        },
        "ChangePassword": {
            "type": "object",
            "properties": {
                "current_password": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": CANDIDATE_MAX,
                    "writeOnly": True,
                },
                "new_password": {
                    **FIELDS_BY_NAME["password"].json_schema,
                    "description": "As User.password.",
                },
            },
            "required": ["current_password", "new_password"],
            "additionalProperties": False,
        },
        "UserPage": {
            "type": "object",
            "properties": {
                "users": {"type": "array", "items": _ref("User")},
                "next_page_token": {"type": "string", "description": "Empty on the last page."},
            },
            "required": ["users", "next_page_token"],
        },
        "UserExport": {
            "type": "object",
            "properties": {
                "user": {"oneOf": [_ref("User"), {"type": "null"}]},
                "events": {"type": "array", "items": _ref("CloudEvent")},
            },
            "required": ["user", "events"],
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["field", "message"],
                    },
                },
            },
            "required": ["type", "title", "status", "detail"],
        },
        "CloudEvent": {
            "type": "object",
            "description": "Sent as the `data` of each Server-Sent Event; the SSE `id` is the resume cursor.",
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "format": "uuid"},
                "source": {"type": "string"},
                "type": {"enum": list(EVENT_TYPES)},
                "subject": {"type": "string", "format": "uuid"},
                "time": timestamp,
                "datacontenttype": {"const": "application/json"},
                "authtype": {
                    "enum": ["service_account", "user", "unauthenticated"],
                    "description": "CloudEvents authcontext: the kind of caller that made the change (absent for "
                    "the service's own purges and for events written before callers were recorded).",
                },
                "authid": {
                    "type": "string",
                    "description": "CloudEvents authcontext: the caller's Kubernetes username, e.g. "
                    "system:serviceaccount:team-a:billing (absent when unauthenticated).",
                },
                "data": {
                    "type": "object",
                    "properties": {
                        "user": _ref("User"),
                        "changed_fields": {"type": "array", "items": {"type": "string"}},
                        "erased": {
                            "const": True,
                            "description": "The user's data was erased: this event keeps only its envelope.",
                        },
                    },
                },
            },
        },
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _paths() -> dict[str, Any]:
    text_ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
    return {
        "/v1/users": {
            "post": {
                "operationId": "createUser",
                "summary": "Create a user",
                "parameters": [
                    _idempotency_key("once the user it created is deleted, 409 (created-user-deleted).")
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("UserCreate")}},
                },
                "responses": {
                    "201": {
                        **_user_response("Created (or replayed for a repeated Idempotency-Key)."),
                        "headers": {
                            "Location": {"schema": {"type": "string"}},
                            "ETag": {"schema": {"type": "string"}},
                        },
                        "links": _USER_LINKS,
                    },
                    "400": _COMMON_ERRORS["400"],
                    "409": _problem(
                        "The nickname or email is taken (already-exists), or this Idempotency-Key's user was "
                        "deleted since (created-user-deleted)."
                    ),
                    "413": _problem("Body too large."),
                    "415": _problem("Content-Type is not application/json."),
                    "422": _problem("Idempotency-Key reused with a different body."),
                },
            },
            "get": {
                "operationId": "listUsers",
                "summary": "List users in creation order (or newest first)",
                "parameters": [
                    _query("country", {"type": "string"}, "ISO 3166-1 alpha-2 code."),
                    _query("nickname", {"type": "string"}, "Exact nickname."),
                    _query("email", {"type": "string"}, "Email, case-insensitive."),
                    _query(
                        "created_after", {"type": "string", "format": "date-time"}, "Exclusive lower bound."
                    ),
                    _query(
                        "created_before", {"type": "string", "format": "date-time"}, "Exclusive upper bound."
                    ),
                    _query(
                        "page_size",
                        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                        f"Default {DEFAULT_PAGE_SIZE}.",
                    ),
                    _query(
                        "page_token",
                        {"type": "string"},
                        "next_page_token of the previous page; keep the filters.",
                    ),
                    _query(
                        "show_deleted",
                        {"type": "boolean", "default": False},
                        "Also list deleted users (with delete_time and purge_time).",
                    ),
                    _query(
                        "email_prefix", {"type": "string"}, "Emails starting with this, case-insensitive."
                    ),
                    _query(
                        "nickname_prefix", {"type": "string"}, "Nicknames starting with this (exact case)."
                    ),
                    _query(
                        "last_name_prefix",
                        {"type": "string"},
                        "Last names starting with this, case-insensitive.",
                    ),
                    _query(
                        "order_by",
                        {"type": "string", "enum": ["created_at", "created_at asc", "created_at desc"]},
                        "Creation order, oldest first (the default) or newest first.",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "A page.",
                        "content": {"application/json": {"schema": _ref("UserPage")}},
                    },
                    "400": _COMMON_ERRORS["400"],
                },
            },
        },
        "/v1/users:verifyPassword": {
            "post": {
                "operationId": "verifyPassword",
                "summary": "Check a login and password",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("VerifyPassword")}},
                },
                "responses": {
                    "200": _user_response("The password is right: the user."),
                    "400": _COMMON_ERRORS["400"],
                    "401": _problem("Wrong login or password (one answer for both)."),
                    "413": _problem("Body too large."),
                    "415": _problem("Content-Type is not application/json."),
                    "429": _LOCKED,
                },
            }
        },
        "/v1/users:batchCreate": {
            "post": {
                "operationId": "batchCreateUsers",
                "summary": f"Create up to {BATCH_MAX} users, all or none",
                "parameters": [_idempotency_key()],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BatchCreateUsers")}},
                },
                "responses": {
                    "200": {
                        "description": "Created (or replayed for a repeated Idempotency-Key), in request order.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"users": {"type": "array", "items": _ref("User")}},
                                    "required": ["users"],
                                }
                            }
                        },
                    },
                    "400": _problem(
                        "Invalid input; `errors` names each by index, e.g. requests[3].user.email."
                    ),
                    "409": _problem("A nickname or email is taken; the error names the request."),
                    "413": _problem("Body too large (BATCH_MAX_BODY_BYTES)."),
                    "415": _problem("Content-Type is not application/json."),
                    "422": _problem("Idempotency-Key reused with a different body."),
                },
            }
        },
        "/v1/users/{id}:changePassword": {
            "parameters": [_ID],
            "post": {
                "operationId": "changePassword",
                "summary": "Change a password, given the current one",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ChangePassword")}},
                },
                "responses": {
                    "200": _user_response("Changed: the user."),
                    **_COMMON_ERRORS,
                    "401": _problem("The current password is wrong."),
                    "413": _problem("Body too large."),
                    "415": _problem("Content-Type is not application/json."),
                    "429": _LOCKED,
                },
            },
        },
        "/v1/users/{id}:unlock": {
            "parameters": [_ID],
            "post": {
                "operationId": "unlockUser",
                "summary": "Clear the account's failed password checks and lock",
                "responses": {"200": _user_response("Unlocked: the user."), **_COMMON_ERRORS},
            },
        },
        "/v1/users/{id}": {
            "parameters": [_ID],
            "get": {
                "operationId": "getUser",
                "summary": "Get a user",
                "parameters": [
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "* or a list of ETags: 304 when one is the user's current ETag; 400 when "
                        "it is not an entity-tag list.",
                    }
                ],
                "responses": {
                    "200": _user_response("The user."),
                    "304": {"description": "Not modified."},
                    **_COMMON_ERRORS,
                },
            },
            "patch": {
                "operationId": "updateUser",
                "summary": "Update a user (JSON merge patch)",
                "parameters": [_IF_MATCH],
                "requestBody": {
                    "required": True,
                    "content": {
                        t: {"schema": _ref("UserPatch")}
                        for t in ("application/merge-patch+json", "application/json")
                    },
                },
                "responses": {
                    "200": _user_response("The updated user."),
                    **_COMMON_ERRORS,
                    "409": _problem("The nickname or email is taken."),
                    "412": _problem("The user changed since the If-Match ETag."),
                    "413": _problem("Body too large."),
                    "415": _problem("Unsupported Content-Type."),
                },
            },
            "delete": {
                "operationId": "deleteUser",
                "summary": "Delete a user (restorable with :undelete until its purge_time)",
                "parameters": [_IF_MATCH],
                "responses": {
                    "204": {"description": "Deleted."},
                    **_COMMON_ERRORS,
                    "412": _problem("The user changed since the If-Match ETag."),
                },
            },
        },
        "/v1/events": {
            "get": {
                "operationId": "streamEvents",
                "summary": "Follow user changes (Server-Sent Events of CloudEvents)",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Resume after this SSE id.",
                    },
                    _query(
                        "after",
                        {"type": "string"},
                        "Same as Last-Event-ID, for clients that cannot set headers. Also `now` (the "
                        "default: from the current end) or `earliest` (from the oldest retained event).",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": (
                            "An endless event stream. An error after it started ends it with an `error` event"
                            " whose data is a problem+json object; reconnect with the last id."
                        ),
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _problem("The cursor is malformed or lies beyond the end of the stream."),
                    "410": _problem(
                        "Events after the cursor were pruned; `oldest_cursor` names where to resume."
                    ),
                    "503": _problem(
                        "The database is unreachable, or this instance serves its most watchers."
                    ),
                },
            }
        },
        "/openapi.json": {
            "get": {"operationId": "openapi", "summary": "This document", "responses": text_ok}
        },
        "/v1/users/{id}:undelete": {
            "parameters": [_ID],
            "post": {
                "operationId": "undeleteUser",
                "summary": "Restore a deleted user before its purge_time",
                "parameters": [_IF_MATCH],
                "responses": {
                    "200": _user_response("The restored user."),
                    **_COMMON_ERRORS,
                    "409": _problem(
                        "The user is not deleted, or its nickname or email was taken since it was deleted."
                    ),
                    "412": _problem("The user changed since the If-Match ETag."),
                },
            },
        },
        "/v1/users/{id}:erase": {
            "parameters": [_ID],
            "post": {
                "operationId": "eraseUser",
                "summary": "Erase a user and every copy of its data (GDPR Art. 17), deleted or not",
                "responses": {
                    "204": {"description": "Erased."},
                    "400": _COMMON_ERRORS["400"],
                    "404": _problem("No such user, and no data of it is kept."),
                },
            },
        },
        "/v1/users/{id}:export": {
            "parameters": [_ID],
            "get": {
                "operationId": "exportUser",
                "summary": "Everything kept about a user (GDPR Art. 15/20): the user and its change history",
                "responses": {
                    "200": {
                        "description": "The user (null once purged) and its retained events, oldest first.",
                        "content": {"application/json": {"schema": _ref("UserExport")}},
                    },
                    "400": _COMMON_ERRORS["400"],
                    "404": _problem("No such user, and no data of it is kept."),
                },
            },
        },
    }


@cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "userservice",
            "version": "v1",
            "description": "Users over REST. Errors are RFC 9457 problem+json. The gRPC API "
            "(userservice.v1.UserService) offers the same operations.",
        },
        "paths": _secured(_paths()),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "serviceAccountToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Kubernetes ServiceAccount token for the service's audience (AUTH_AUDIENCE), "
                    "e.g. from a projected volume. Kubernetes RBAC grants each operation (docs/api.md).",
                }
            },
        },
        "security": [{"serviceAccountToken": []}],
    }


def _secured(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation but this document's needs a token (401) and an RBAC grant (403)."""
    for path, item in paths.items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if path == "/openapi.json":
                operation["security"] = []
                continue
            operation["responses"].setdefault(
                "401", _problem("No bearer token, or one not valid for this service (see WWW-Authenticate).")
            )
            operation["responses"]["403"] = _problem(
                "Kubernetes RBAC does not grant the caller this operation's verb; the problem names it."
            )
    return paths
