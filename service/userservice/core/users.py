"""The user use cases: create, read, update, delete, list, undelete, erase, export; one method each, called by every
adapter alike.

Every rule lives in domain/ or here, never in an adapter. Each change and its event commit in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from userservice.clients.breach import BreachCheck
from userservice.core.anchors import Anchor, PageAnchors
from userservice.core.common import append_bare_event, append_event, check_strength, parse_user_id
from userservice.domain import events
from userservice.domain.caller import Caller
from userservice.domain.errors import (
    AlreadyExists,
    CreatedUserDeleted,
    IdempotencyConflict,
    NotFound,
    PreconditionFailed,
    invalid,
)
from userservice.domain.events import StoredEvent
from userservice.domain.listing import ListFilter, PageTokens, Position, resolve_page_size
from userservice.domain.model import Changes, NewUser, User, etag_matches
from userservice.domain.password_policy import check_not_personal
from userservice.domain.search import Query, fingerprint
from userservice.domain.validation import validate_changes, validate_new_user
from userservice.metrics import Metrics
from userservice.passwords.hashing import Passwords
from userservice.store import idempotency, lifecycle, outbox
from userservice.store import search as search_store
from userservice.store import users as store
from userservice.store.db import FairPool, load_secret
from userservice.store.replicas import ReadRouter

log = logging.getLogger(__name__)


def _fingerprint(new: NewUser) -> str:
    return hashlib.sha256(json.dumps(new.profile(), sort_keys=True).encode()).hexdigest()


def _expected_version(if_match: str | None, user: User, field: str) -> None:
    """Checks an If-Match / etag precondition: absent or '*' always holds; a malformed one is invalid."""
    if if_match is None or not if_match.strip():
        return
    if not etag_matches(if_match, user.version, field):
        raise PreconditionFailed(f"the user changed since you read it: its current etag is {user.etag}")


@dataclass(frozen=True)
class Created:
    user: User
    replayed: bool


@dataclass(frozen=True)
class Export:
    """What the service keeps about a user (GDPR Art. 15/20): the user, deleted or not (None once purged), and
    its retained events. Never a password hash."""

    user: User | None
    events: list[StoredEvent]


@dataclass(frozen=True)
class Page:
    users: list[User]
    next_page_token: str


@dataclass(frozen=True)
class Found:
    """One page of a search by position (SCIM's startIndex, 1-based) and the number of users it matches."""

    users: list[User]
    total: int


class UserCore:
    def __init__(
        self,
        db: FairPool,
        passwords: Passwords,
        metrics: Metrics,
        idempotency_ttl: float,
        delete_retention: float,
        breach: BreachCheck,
        reads: ReadRouter | None = None,
    ) -> None:
        self._breach = breach
        self._db = db
        # Get, list and search read through the router (replicas, when configured); writes and the reads a
        # write depends on use the primary.
        self._reads = reads or ReadRouter(db)
        self._passwords = passwords
        self._tokens: PageTokens | None = None
        self._metrics = metrics
        self._idempotency_ttl = idempotency_ttl
        self._delete_retention = delete_retention
        self._anchors = PageAnchors()

    async def _append(
        self,
        conn: asyncpg.Connection,
        event_type: str,
        user: User,
        caller: Caller,
        changed: tuple[str, ...] = (),
    ) -> None:
        await append_event(conn, self._metrics, event_type, user, caller, changed)

    async def create(
        self,
        body: Mapping[str, object],
        caller: Caller,
        idempotency_key: str | None = None,
        optional: frozenset[str] = frozenset(),
    ) -> Created:
        """`optional`: fields the adapter lets the caller leave out although the native API requires them
        (PROVISIONING_OPTIONAL for SCIM); a user created without a password has no hash, and none verifies."""
        new = validate_new_user(body, optional)
        password_hash: str | None = None
        if new.password:
            await check_strength(self._passwords, new.password, "password", new.personal())
            await self._breach.check(new.password, "password")
            password_hash = await self._passwords.hash(new.password)
        fingerprint = _fingerprint(new)
        async with self._db.acquire() as conn:
            async with conn.transaction():
                if idempotency_key is None or await idempotency.claim(
                    conn,
                    idempotency_key,
                    fingerprint,
                    password_hash or "",  # a user without a password: the key keeps no hash
                    self._idempotency_ttl,
                ):
                    user = await store.insert(conn, uuid.uuid4(), new, password_hash)
                    await self._append(conn, events.CREATED, user, caller)
                    if idempotency_key is not None:
                        await idempotency.record_response(conn, idempotency_key, user.public(), [user.id])
                    self._metrics.user_changes.labels("created").inc()
                    log.info("user created", extra={"user_id": str(user.id)})
                    return Created(user, replayed=False)
            stored = await idempotency.lookup(conn, idempotency_key)
            exists = stored is not None and await store.get(conn, UUID(stored.response["id"])) is not None
        if stored is None:  # claimed by a request that has not finished: retrying later will replay it
            raise IdempotencyConflict(
                "a request with this idempotency key is still in progress; retry shortly"
            )
        same = stored.fingerprint == fingerprint and await self._passwords.verify(
            stored.password_hash, new.password
        )
        if not same:
            raise IdempotencyConflict("this idempotency key was already used with a different request")
        if not exists:
            raise CreatedUserDeleted(
                f"this request already created user {stored.response['id']}, which has since been deleted; "
                "undelete it, or send a new idempotency key to create another"
            )
        return Created(User.from_public(stored.response), replayed=True)

    async def get(self, user_id: str) -> User:
        uid = parse_user_id(user_id)
        async with self._reads.acquire() as conn:
            user = await store.get(conn, uid)
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        return user

    async def update(
        self,
        user_id: str,
        body: Mapping[str, object],
        caller: Caller,
        if_match: str | None = None,
        etag_field: str = "etag",
    ) -> User:
        uid = parse_user_id(user_id)
        changes = validate_changes(body)
        columns: dict[str, object] = {k: v for k, v in changes.values.items() if k != "password"}
        if "password" in changes.values:
            password = str(changes.values["password"])
            personal = await self._check_not_personal(uid, user_id, changes)
            await check_strength(self._passwords, password, "password", personal)
            await self._breach.check(password, "password")
            columns["password_hash"] = await self._passwords.hash(password)
        async with self._db.acquire() as conn, conn.transaction():
            current = await store.lock(conn, uid)
            if current is None:
                raise NotFound(f"user {user_id} does not exist")
            _expected_version(if_match, current, etag_field)
            changed = changes.changed_against(current)
            if not changed:
                return current
            updated = await store.update(
                conn, uid, {k: v for k, v in columns.items() if k in changed or k == "password_hash"}
            )
            await self._append(conn, events.UPDATED, updated, caller, changed)
            if "password" in changed:
                await self._append(conn, events.PASSWORD_CHANGED, updated, caller)
        self._metrics.user_changes.labels("updated").inc()
        log.info("user updated", extra={"user_id": user_id, "fields": list(changed)})
        return updated

    async def _check_not_personal(self, uid: UUID, user_id: str, changes: Changes) -> tuple[str, ...]:
        """A new password must not contain the nickname or email the user will have after the update; returns what
        the user will be known by, for the strength estimate."""
        async with self._db.acquire() as conn:
            current = await store.get(conn, uid)
        if current is None:
            raise NotFound(f"user {user_id} does not exist")
        values = changes.values
        after = NewUser(
            first_name=str(values.get("first_name", current.first_name)),
            last_name=str(values.get("last_name", current.last_name)),
            nickname=str(values.get("nickname", current.nickname)),
            email=str(values.get("email", current.email)),
            country=current.country,
            password=str(values["password"]),
        )
        try:
            check_not_personal(after.password, after.email, after.nickname)
        except ValueError as exc:
            raise invalid("password", str(exc)) from None
        return after.personal()

    async def delete(
        self, user_id: str, caller: Caller, if_match: str | None = None, etag_field: str = "etag"
    ) -> None:
        uid = parse_user_id(user_id)
        async with self._db.acquire() as conn, conn.transaction():
            current = await store.lock(conn, uid)
            if current is None:
                raise NotFound(f"user {user_id} does not exist")
            _expected_version(if_match, current, etag_field)
            deleted = await lifecycle.soft_delete(conn, uid, self._delete_retention)
            await self._append(conn, events.DELETED, deleted, caller)
        self._metrics.user_changes.labels("deleted").inc()
        log.info("user deleted", extra={"user_id": user_id})

    async def _page_tokens(self) -> PageTokens:
        # Loaded on first use: the secret lives in the database, which may be migrated after start-up.
        if self._tokens is None:
            async with self._db.acquire() as conn:
                self._tokens = PageTokens(await load_secret(conn, "page_token"))
        return self._tokens

    async def list(self, list_filter: ListFilter, page_size: int | None, page_token: str | None) -> Page:
        size = resolve_page_size(page_size)
        tokens = await self._page_tokens()
        after = tokens.decode(page_token, list_filter) if page_token else None
        async with self._reads.acquire() as conn:
            rows = await store.page(conn, list_filter, after, size + 1)
        users, more = rows[:size], len(rows) > size
        token = ""
        if more:
            last = users[-1]
            token = tokens.encode(Position(last.created_at, last.id), list_filter)
        return Page(users, token)

    async def search(self, query: Query, start_index: int, count: int) -> Found:
        """Users `start_index` (1-based) to `start_index + count - 1` of those the query matches, in (created_at,
        id) order, and how many it matches. A page starts from the anchor that the page before it left (the key of
        its last user), so paging on through a million users reads each page's rows, never the ones before. The
        total is counted by the page that begins a walk (no anchor at its index) and carried along the walk, and not
        counted at all when the first page holds every match."""
        key = fingerprint(query)
        anchor = self._anchors.nearest(key, start_index)
        async with self._reads.acquire() as conn:
            total = anchor.total if anchor.index == start_index else None
            if total is None and (start_index > 1 or count == 0):
                total = await search_store.count(conn, query)
            if count == 0 or (total is not None and start_index > total):
                return Found([], total or 0)
            offset = start_index - anchor.index
            users = await search_store.page(conn, query, anchor.before, offset, count)
            if total is None:  # the first page: it holds every match unless it is full
                total = len(users) if len(users) < count else await search_store.count(conn, query)
        if users and start_index + len(users) <= total:  # a page follows (a lookup leaves no anchor behind)
            last = users[-1]
            self._anchors.remember(
                key, Anchor(start_index + len(users), Position(last.created_at, last.id), total)
            )
        return Found(users, total)

    async def undelete(
        self, user_id: str, caller: Caller, if_match: str | None = None, etag_field: str = "etag"
    ) -> User:
        uid = parse_user_id(user_id)
        async with self._db.acquire() as conn, conn.transaction():
            current = await store.lock(conn, uid, deleted=True)
            if current is None:
                if await store.get(conn, uid) is not None:
                    raise AlreadyExists("id", f"user {user_id} is not deleted")
                raise NotFound(f"user {user_id} does not exist, or was purged")
            _expected_version(if_match, current, etag_field)
            restored = await lifecycle.undelete(conn, uid)
            await self._append(conn, events.UNDELETED, restored, caller)
        self._metrics.user_changes.labels("undeleted").inc()
        log.info("user undeleted", extra={"user_id": user_id})
        return restored

    async def erase(self, user_id: str, caller: Caller) -> None:
        """GDPR Art. 17: removes the user, deleted or not, and every copy of its data, in one transaction; what
        stays is its id in the events (their type, time and cursor too) and an erased event without data."""
        uid = parse_user_id(user_id)
        async with self._db.acquire() as conn, conn.transaction():
            if not await lifecycle.erase(conn, uid):
                raise NotFound(f"user {user_id} does not exist, and no data of it is kept")
            await append_bare_event(conn, self._metrics, events.ERASED, uid, {}, caller)
        self._metrics.user_changes.labels("erased").inc()
        log.info("user erased", extra={"user_id": user_id})

    async def export(self, user_id: str) -> Export:
        uid = parse_user_id(user_id)
        async with self._db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            # One snapshot: the user and its history agree.
            user = await lifecycle.get_any(conn, uid)
            history = await outbox.read_subject(conn, uid)
        if user is None and not any("user" in e.data for e in history):
            raise NotFound(f"user {user_id} does not exist, and no data of it is kept")
        return Export(user, history)
