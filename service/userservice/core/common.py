"""Helpers every use case shares: ids and idempotency keys as they come in, and each change's event appended in the
change's own transaction with the caller who made it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from userservice.domain import events, password_policy
from userservice.domain.caller import Caller
from userservice.domain.errors import invalid
from userservice.domain.model import User
from userservice.metrics import Metrics
from userservice.passwords.hashing import Passwords
from userservice.store import outbox

IDEMPOTENCY_KEY_MAX = 255


def parse_user_id(text: str) -> UUID:
    try:
        return UUID(text)
    except (ValueError, AttributeError, TypeError):
        raise invalid("id", "must be a UUID such as 0b7e5b42-5c3c-4a4c-9d2c-8f1f0e0f5a11") from None


def check_idempotency_key(key: str, field: str) -> str:
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isascii() or not key.isprintable():
        raise invalid(field, f"must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters")
    return key


async def append_event(
    conn: asyncpg.Connection,
    metrics: Metrics,
    event_type: str,
    user: User,
    caller: Caller,
    changed: tuple[str, ...] = (),
) -> None:
    """Appends a change event in the writer's transaction; every use case that changes a user calls this."""
    await append_bare_event(
        conn, metrics, event_type, user.id, events.event_data(user.public(), changed), caller
    )


async def append_events(
    conn: asyncpg.Connection, metrics: Metrics, event_type: str, users: list[User], caller: Caller
) -> None:
    """Appends one change event per user in one statement (a batch)."""
    await outbox.append_many(
        conn,
        event_type,
        [(u.id, events.event_data(u.public(), ())) for u in users],
        caller.authtype,
        caller.authid,
    )
    metrics.events_appended.labels(event_type).inc(len(users))


async def append_bare_event(
    conn: asyncpg.Connection,
    metrics: Metrics,
    event_type: str,
    subject: UUID,
    data: dict[str, Any],
    caller: Caller,
) -> None:
    """Appends an event whose data is given as is: for a user that is gone (erased), none of its data."""
    await outbox.append(conn, event_type, subject, data, caller.authtype, caller.authid)
    metrics.events_appended.labels(event_type).inc()


async def check_strength(passwords: Passwords, password: str, field: str, personal: tuple[str, ...]) -> None:
    """Refuses (InvalidArgument on `field`) a new password the strength estimate finds guessable; the estimate runs
    in the hashing threads, since it costs milliseconds of CPU."""
    try:
        password_policy.check_score(await passwords.strength(password, personal))
    except ValueError as exc:
        raise invalid(field, str(exc)) from None
