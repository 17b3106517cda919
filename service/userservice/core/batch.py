"""Batch create (AIP-233): up to 1,000 users in one transaction, all or none, each with a password or the
hash it had in another system; idempotent like a single create; one created event per user."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from userservice.clients.breach import BreachCheck
from userservice.core.common import append_events, check_strength
from userservice.domain import events
from userservice.domain.batch import VIOLATIONS_MAX, Imported, validate_batch
from userservice.domain.caller import Caller
from userservice.domain.errors import AlreadyExists, CreatedUserDeleted, IdempotencyConflict, InvalidArgument
from userservice.domain.model import User
from userservice.metrics import Metrics
from userservice.passwords import formats
from userservice.passwords.hashing import Passwords
from userservice.store import batch as store
from userservice.store import idempotency
from userservice.store.db import FairPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchCreated:
    users: list[User]
    replayed: bool


def _fingerprint(items: list[Imported]) -> str:
    """The request without its plaintext passwords (those are compared through an argon2 hash)."""
    shape = ["batch", [[item.new.profile(), item.password_hash] for item in items]]
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


async def _check_free(conn: asyncpg.Connection, items: list[Imported]) -> None:
    """Names the first request whose nickname or email a user already has (the unique indexes still guard
    against a concurrent create)."""
    nicknames, emails = await store.taken(
        conn, [item.new.nickname for item in items], [item.new.email for item in items]
    )
    for i, item in enumerate(items):
        for field, taken in (
            ("nickname", item.new.nickname.lower() in nicknames),
            ("email", item.new.email.lower() in emails),
        ):
            if taken:
                raise AlreadyExists(f"requests[{i}].user.{field}", f"a user with this {field} already exists")


def random_ids(count: int) -> list[UUID]:
    """`count` random (version 4) UUIDs from one draw of the system's randomness, not one draw each."""
    raw = os.urandom(16 * count)
    return [UUID(bytes=raw[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


class BatchCore:
    def __init__(
        self,
        db: FairPool,
        passwords: Passwords,
        metrics: Metrics,
        idempotency_ttl: float,
        breach: BreachCheck,
    ) -> None:
        self._breach = breach
        self._db = db
        self._passwords = passwords
        self._metrics = metrics
        self._idempotency_ttl = idempotency_ttl

    async def create(
        self, body: Mapping[str, object], caller: Caller, idempotency_key: str | None = None
    ) -> BatchCreated:
        items = validate_batch(body, formats.check_hash)
        plaintext = [
            (f"requests[{i}].user.password", item) for i, item in enumerate(items) if not item.password_hash
        ]
        checked = await asyncio.gather(
            *(
                check_strength(self._passwords, item.new.password, at, item.new.personal())
                for at, item in plaintext
            ),
            return_exceptions=True,
        )
        weak = [v for result in checked if isinstance(result, InvalidArgument) for v in result.violations]
        if weak:  # every weak password at once, by index, like the rest of the batch's validation
            raise InvalidArgument(weak[:VIOLATIONS_MAX])
        for result in checked:
            if isinstance(result, BaseException):
                raise result
        await asyncio.gather(*(self._breach.check(item.new.password, at) for at, item in plaintext))
        hashed = await asyncio.gather(
            *(self._passwords.hash(item.new.password) for item in items if item.password_hash is None)
        )
        pending = iter(hashed)
        password_hashes = [item.password_hash or next(pending) for item in items]
        if idempotency_key is None:  # no replay to compare with
            fingerprint = secrets = secrets_hash = ""
        else:
            fingerprint = _fingerprint(items)
            secrets = json.dumps([item.new.password for item in items])
            secrets_hash = await self._passwords.hash(secrets)
        async with self._db.acquire() as conn:
            async with conn.transaction():
                if idempotency_key is None or await idempotency.claim(
                    conn, idempotency_key, fingerprint, secrets_hash, self._idempotency_ttl
                ):
                    await _check_free(conn, items)
                    users = await store.insert(
                        conn,
                        [
                            (user_id, item.new, password_hash)
                            for user_id, item, password_hash in zip(
                                random_ids(len(items)), items, password_hashes, strict=True
                            )
                        ],
                    )
                    await append_events(conn, self._metrics, events.CREATED, users, caller)
                    if idempotency_key is not None:
                        response = {"users": [user.public() for user in users]}
                        await idempotency.record_response(
                            conn, idempotency_key, response, [user.id for user in users]
                        )
                    self._metrics.user_changes.labels("created").inc(len(users))
                    log.info("users created in a batch", extra={"count": len(users)})
                    return BatchCreated(users, replayed=False)
            stored = await idempotency.lookup(conn, idempotency_key)
            created = [] if stored is None else [UUID(u["id"]) for u in stored.response["users"]]
            alive = await store.live(conn, created)
        if stored is None:
            raise IdempotencyConflict(
                "a request with this idempotency key is still in progress; retry shortly"
            )
        same = stored.fingerprint == fingerprint and await self._passwords.verify(
            stored.password_hash, secrets
        )
        if not same:
            raise IdempotencyConflict("this idempotency key was already used with a different request")
        gone = [str(user_id) for user_id in created if user_id not in alive]
        if gone:  # as for a create: the original answer would no longer be true
            raise CreatedUserDeleted(
                f"this request already created users of which {len(gone)} have since been deleted "
                f"({', '.join(gone[:3])}{', …' if len(gone) > 3 else ''}); undelete them, or send a new "
                "idempotency key to create others"
            )
        return BatchCreated([User.from_public(u) for u in stored.response["users"]], replayed=True)
