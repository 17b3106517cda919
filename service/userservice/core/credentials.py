"""Password use cases over REST and gRPC alike: verify a login's password, change a password, unlock an
account; every check throttled across replicas.

Every attempt is first counted in PostgreSQL, by one atomic upsert per subject (the account, the caller) that also
refuses it while the subject is locked, so a locked subject learns nothing about its guesses and concurrent guesses
on any replica cannot pass the threshold before the count sees them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from userservice.clients.breach import BreachCheck
from userservice.core.common import append_event, check_strength, parse_user_id
from userservice.domain import events
from userservice.domain.caller import Caller
from userservice.domain.errors import Locked, NotFound, Unauthenticated, invalid
from userservice.domain.fields import check_password
from userservice.domain.login import check_candidate_password, parse_login
from userservice.domain.model import User
from userservice.domain.password_policy import check_not_personal, normalise
from userservice.domain.throttle import LockoutPolicy
from userservice.metrics import Metrics
from userservice.passwords import formats
from userservice.passwords.hashing import Passwords
from userservice.store import credentials as store
from userservice.store import throttle
from userservice.store import users as users_store
from userservice.store.db import FairPool

log = logging.getLogger(__name__)

VERIFY_FIELDS = frozenset({"login", "password"})
CHANGE_FIELDS = frozenset({"current_password", "new_password"})
WRONG = "the login or password is wrong"


@dataclass(frozen=True)
class Throttling:
    account: LockoutPolicy
    caller: LockoutPolicy
    window_seconds: float  # a count whose last failure is older than this starts again


def _only(body: Mapping[str, object], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(unknown[0][:64], f"is not a field of this request; use {', '.join(sorted(allowed))}")


class Credentials:
    def __init__(
        self,
        db: FairPool,
        passwords: Passwords,
        metrics: Metrics,
        breach: BreachCheck,
        throttling: Throttling,
    ) -> None:
        self._breach = breach
        self._db = db
        self._passwords = passwords
        self._metrics = metrics
        self._throttling = throttling

    async def _verify_hash(self, password_hash: str | None, password: str) -> str | None:
        """The form of the password that matches: NFKC, as hashed since passwords are normalised, else the
        text as sent, as other systems (and this one before) hashed it. None when neither does.

        A refusal never takes less than one at the current costs: an unknown login (no hash) is checked
        against a hash of nothing, and a cheaper imported hash that did not match spends that check too, so
        the time does not tell which logins exist."""
        normalised = normalise(password)
        for form in dict.fromkeys((normalised, password)):
            if password_hash is None:
                matched = await self._passwords.verify_nothing(form)
            else:
                matched = await self._passwords.verify(password_hash, form)
                if not matched and self._passwords.needs_rehash(password_hash):
                    await self._passwords.verify_nothing(form)
            if matched:
                return form
        return None

    async def _admit(self, subjects: tuple[throttle.Subject, throttle.Subject]) -> tuple[int, int]:
        """Counts this attempt against the account and the caller before any hashing, as one transaction, and
        returns both counts; raises Locked when either is locked. Counting first makes the count and the check
        one step: of N concurrent guesses against a threshold of k, the k-th locks the subject and the rest are
        refused without being checked."""
        policies = (self._throttling.account, self._throttling.caller)
        counts: list[int] = []
        async with self._db.acquire() as conn, conn.transaction():
            for subject, policy in zip(subjects, policies, strict=True):  # one lock order: account, caller
                count = await throttle.admit(conn, subject, self._throttling.window_seconds)
                if count is None:  # the transaction rolls back: a refused attempt counts against nobody
                    wait = await throttle.locked_for(conn, subjects)
                    self._metrics.password_verifications.labels("locked").inc()
                    seconds = max(1, math.ceil(wait))
                    raise Locked(f"too many failed attempts; retry in {seconds} seconds", seconds)
                lock_for = policy.lock_seconds(count)
                if lock_for is not None:  # held while this attempt is checked; a success lifts it
                    await throttle.lock(conn, subject, lock_for)
                counts.append(count)
        return counts[0], counts[1]

    async def _check(
        self, account: throttle.Subject, caller: Caller, password_hash: str | None, password: str
    ) -> str | None:
        """The matching form of the password (see _verify_hash), or None; raises Locked, before any hashing,
        while the account or the caller is locked. A success clears both counts: they count consecutive
        failures."""
        subjects = (account, ("caller", caller.throttle_key))
        counts = await self._admit(subjects)
        matched = await self._verify_hash(password_hash, password)
        if matched is not None:
            async with self._db.acquire() as conn:
                await throttle.clear(conn, subjects)
            return matched
        policies = (self._throttling.account, self._throttling.caller)
        for (scope, _), count, policy in zip(subjects, counts, policies, strict=True):
            if policy.lock_seconds(count) is not None:
                log.warning("locked after failed password checks", extra={"scope": scope})
        return None

    async def verify(self, body: Mapping[str, object], caller: Caller) -> User:
        """The user whose login and password these are; Unauthenticated, the same either way, when the
        login names no user or the password is wrong."""
        _only(body, VERIFY_FIELDS)
        login = parse_login(body.get("login"))
        password = check_candidate_password(body.get("password"))
        async with self._db.acquire() as conn:
            found = await store.find_by_login(conn, login)
        if found is None:
            await self._check(("account", login.digest), caller, None, password)
            self._metrics.password_verifications.labels("unknown_login").inc()
            raise Unauthenticated(WRONG)
        user, password_hash = found
        # A deactivated user, or one without a password, is checked against nothing: refused like a wrong
        # password, in the same time, and counted.
        matched = await self._check(
            ("account", str(user.id)), caller, password_hash if user.active else None, password
        )
        if matched is None or password_hash is None:  # (a user without a hash never matches)
            self._metrics.password_verifications.labels("wrong_password").inc()
            raise Unauthenticated(WRONG)
        self._metrics.password_verifications.labels("success").inc()
        if self._passwords.needs_rehash(password_hash) or matched != normalise(password):
            await self._upgrade(user, password_hash, password)
        return user

    async def _upgrade(self, user: User, old_hash: str, password: str) -> None:
        """Replaces a hash of an older scheme, weaker costs or an unnormalised password, now that the
        password is known to be right."""
        new_hash = await self._passwords.hash(normalise(password))
        async with self._db.acquire() as conn:
            if await store.rehash(conn, user.id, old_hash, new_hash):
                self._metrics.password_rehashes.labels(formats.scheme_of(old_hash) or "unknown").inc()
                log.info("password hash upgraded", extra={"user_id": str(user.id)})

    async def change_password(self, user_id: str, body: Mapping[str, object], caller: Caller) -> User:
        """Sets a new password for whoever knows the current one; a wrong current password is a failure,
        counted and locked like any other."""
        uid = parse_user_id(user_id)
        _only(body, CHANGE_FIELDS)
        current = check_candidate_password(body.get("current_password"), "current_password")
        try:
            new = check_password(body.get("new_password"))
        except ValueError as exc:
            raise invalid("new_password", str(exc)) from None
        async with self._db.acquire() as conn:
            found = await store.find_by_id(conn, uid)
        if found is None:
            raise NotFound(f"user {user_id} does not exist")
        try:
            check_not_personal(new, found[0].email, found[0].nickname)
        except ValueError as exc:
            raise invalid("new_password", str(exc)) from None
        usable = found[1] if found[0].active else None
        if await self._check(("account", str(uid)), caller, usable, current) is None:
            self._metrics.password_verifications.labels("wrong_password").inc()
            raise Unauthenticated("the current password is wrong")
        self._metrics.password_verifications.labels("success").inc()
        user = found[0]
        await check_strength(
            self._passwords, new, "new_password", (user.first_name, user.last_name, user.nickname, user.email)
        )
        await self._breach.check(new, "new_password")
        new_hash = await self._passwords.hash(new)
        async with self._db.acquire() as conn, conn.transaction():
            locked = await store.find_by_id(conn, uid, for_update=True)
            if locked is None:
                raise NotFound(f"user {user_id} does not exist")
            if locked[1] != found[1]:  # changed (or upgraded) since it was checked: the one checked is stale
                raise Unauthenticated("the current password is wrong")
            user = await users_store.update(conn, uid, {"password_hash": new_hash})
            await append_event(conn, self._metrics, events.PASSWORD_CHANGED, user, caller)
        self._metrics.user_changes.labels("updated").inc()
        log.info("password changed", extra={"user_id": str(uid)})
        return user

    async def unlock(self, user_id: str) -> User:
        """Clears the account's failure count and lock (a caller's own lock stays)."""
        uid = parse_user_id(user_id)
        async with self._db.acquire() as conn:
            user = await users_store.get(conn, uid)
            if user is None:
                raise NotFound(f"user {user_id} does not exist")
            await throttle.clear(conn, [("account", str(uid))])
        log.info("account unlocked", extra={"user_id": str(uid)})
        return user
