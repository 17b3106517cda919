"""A model of users, their logins, passwords, lockouts and idempotency keys, against the real service.

Hypothesis drives sequences of create, batch create (with and without a key, with imported hashes), replays of
keys, update, delete, undelete, erase, purge, verifyPassword, changePassword and unlock, each over REST or gRPC, and
SCIM's writes (create without a password or country, PATCH as Okta and Entra send it, delete),
predicts every answer from the model and checks after every step what must hold whatever the sequence:
only a live user authenticates, a login names at most one live user, nothing of an erased user is left in any
column of any table, the event feed replays to the users table, and the table is what the model says.

The machine runs in a worker thread (Hypothesis' state machines are synchronous); every call is handed to the
service's event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import aiohttp
import asyncpg
import pytest
from argon2 import PasswordHasher, Type
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from passlib import hash as passlib_hash

from tests.stateful.client import TRANSPORTS, Client, Outcome, Scim, Transport, run_in
from tests.support.schema import occurrences
from tests.support.service import RunningService, in_process
from userservice.core.maintenance import purge_once
from userservice.v1 import user_service_pb2_grpc as pb_grpc

LOCKOUT = 3  # an account's threshold; callers are never locked here (the concurrency tests cover them)
THROTTLE = {"lockout_threshold": LOCKOUT, "caller_lockout_threshold": 0, "lockout_base": 3600.0}
LIVE, DELETED, ERASED, PURGED = "live", "deleted", "erased", "purged"
GONE = (ERASED, PURGED)
PERSONAL = ("first_name", "last_name", "nickname", "email")
SCHEMES = ("argon2id", "argon2i", "argon2d", "bcrypt", "scrypt", "pbkdf2-sha256")
T = TypeVar("T")


def word() -> str:
    """12 letters no other value in the run has: a search for it finds only its own copies."""
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:12])


def new_password() -> str:
    return f"{word()} {word()} staple"


def imported_hash(scheme: str, password: str) -> str:
    """A hash as another system wrote it, at the cheapest costs the formats allow."""
    if scheme.startswith("argon2"):
        kind = {"argon2id": Type.ID, "argon2i": Type.I, "argon2d": Type.D}[scheme]
        return PasswordHasher(time_cost=1, memory_cost=256, type=kind).hash(password)
    writer = {
        "bcrypt": passlib_hash.bcrypt.using(rounds=4),
        "scrypt": passlib_hash.scrypt.using(rounds=4),
        "pbkdf2-sha256": passlib_hash.pbkdf2_sha256.using(rounds=1000),
    }[scheme]
    return str(writer.hash(password))


@dataclass
class Person:
    """A user as the model knows it. `history` holds every personal value it ever had, `hashes` every hash
    of its password the database may have copied."""

    id: str
    fields: dict[str, Any]
    password: str | None  # None: created over SCIM without one (no password verifies)
    state: str = LIVE
    active: bool = True
    version: int = 1
    failures: int = 0
    history: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)

    def logins(self) -> tuple[str, str]:
        return self.fields["nickname"], self.fields["email"]

    def holds(self, login: str) -> bool:
        return login == self.fields["nickname"] or login.lower() == self.fields["email"].lower()


@dataclass
class Key:
    """An idempotency key and the request sent with it."""

    batch: bool
    users: list[dict[str, str]]
    ids: list[str]


@dataclass
class World:
    """What the machine reaches the service through; set once per test on a subclass."""

    loop: asyncio.AbstractEventLoop
    client: Client
    pool: asyncpg.Pool
    scim: Scim

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return run_in(self.loop, coroutine)


class UserLifecycle(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        self.people: dict[str, Person] = {}
        self.keys: dict[str, Key] = {}
        self.steps = 0
        self.touched: set[str] = set()  # logins whose holder changed in this step

    # --- the model's view -------------------------------------------------------------------------------

    def live_owner(self, login: str) -> Person | None:
        owners = [p for p in self.people.values() if p.state == LIVE and p.holds(login)]
        assert len(owners) <= 1, f"the model has two live owners of {login}"
        return owners[0] if owners else None

    def taken(self, user: dict[str, str]) -> bool:
        return any(self.live_owner(user[k]) is not None for k in ("nickname", "email"))

    def fresh_user(self, data: st.DataObject, reuse: bool) -> dict[str, str]:
        """A new user's fields; with `reuse`, its nickname or email is one another user has or had."""
        user = {
            "first_name": word().title(),
            "last_name": word().title(),
            "nickname": word(),
            "email": f"{word()}@example.com",
            "country": data.draw(st.sampled_from(["GB", "FR", "JP"])),
        }
        if reuse and self.people:
            other = self.people[data.draw(st.sampled_from(list(self.people)))]
            name = data.draw(st.sampled_from(["nickname", "email"]))
            user[name] = other.fields[name]
        return user

    def pick(self, data: st.DataObject, *states: str) -> Person:
        # In the order they were made: ids are random, a sorted pick would not repeat across runs.
        ids = [i for i, p in self.people.items() if not states or p.state in states]
        return self.people[data.draw(st.sampled_from(ids))]

    def has(self, *states: str) -> bool:
        return any(p.state in states for p in self.people.values())

    def record(self, user_id: str, user: dict[str, Any]) -> None:
        """A user the service just created from the request item `user`."""
        password = user.get("password") or user.get("_password")
        person = Person(user_id, {k: user.get(k) for k in (*PERSONAL, "country")}, password)
        person.history.update(user[k] for k in PERSONAL)
        person.hashes.update(self.stored_hashes([user_id]))
        self.people[user_id] = person
        self.touched.update(person.logins())

    def stored_hashes(self, ids: list[str]) -> list[str]:
        rows = self.world.run(
            self.world.pool.fetch(
                "SELECT password_hash FROM users WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]
            )
        )
        return [row["password_hash"] for row in rows if row["password_hash"] is not None]  # SCIM: maybe none

    def expect(self, outcome: Outcome, *kinds: str) -> None:
        assert outcome.kind != "server_error", f"the service failed: {outcome}"
        assert outcome.kind in kinds, f"expected {' or '.join(kinds)}, got {outcome}"

    # --- calls that the model predicts --------------------------------------------------------------------

    def verify(self, transport: Transport, login: str, password: str | None) -> Outcome:
        """verifyPassword, its answer checked against the model, which counts the account's failures. A person
        without a password is tried with one that is not theirs."""
        password = password or new_password()
        owner = self.live_owner(login)
        outcome = self.world.run(self.world.client.verify(transport, login, password))
        assert outcome.kind != "server_error", f"the service failed: {outcome}"
        if owner is None:
            assert outcome.kind != "ok", (
                f"{login} belongs to no live user, yet a password authenticated it as {outcome.body}"
            )
            self.expect(outcome, "unauthenticated", "locked")
        elif owner.failures >= LOCKOUT:
            self.expect(outcome, "locked")
        elif password == owner.password and owner.active:
            self.expect(outcome, "ok")
            assert outcome.body["id"] == owner.id, f"{login} authenticated someone else: {outcome.body}"
            owner.failures = 0
        else:
            assert outcome.kind != "ok", f"a password that is not {owner.id}'s authenticated it: {outcome}"
            self.expect(outcome, "unauthenticated")
            owner.failures += 1
        return outcome

    def send(
        self, transport: Transport, users: list[dict[str, str]], key: str | None, batch: bool
    ) -> Outcome:
        """A create (or a batch), as the request goes out; any user in the answer must exist."""
        client = self.world.client
        if batch:
            outcome = self.world.run(client.batch_create(transport, strip(users), key))
        else:
            outcome = self.world.run(client.create(transport, strip(users)[0], key))
        returned = (
            {u.get("id") for u in outcome.body.get("users", [outcome.body])}
            if outcome.kind == "ok"
            else set()
        )
        gone = sorted(i for i in returned if i in self.people and self.people[i].state in GONE)
        assert not gone, (
            f"a create with key {key} answered with the data of erased or purged users {gone}: {outcome}"
        )
        return outcome

    def create_as_model_predicts(
        self, transport: Transport, users: list[dict[str, str]], key: str | None, batch: bool
    ) -> list[str]:
        """Sends a create (or batch) the service has not seen (or has forgotten), checks the answer the model
        predicts and records what was created."""
        outcome = self.send(transport, users, key, batch)
        if any(self.taken(u) for u in users):
            self.expect(outcome, "already_exists")
            return []
        self.expect(outcome, "ok")
        created = outcome.body["users"] if batch else [outcome.body]
        assert not outcome.replayed, f"a new request was answered as a replay: {outcome}"
        for user, body in zip(users, created, strict=True):
            assert body["version"] == 1 and not any("password" in k for k in body), body
            self.record(body["id"], user)
        return [body["id"] for body in created]

    # --- rules ------------------------------------------------------------------------------------------

    @rule(data=st.data(), transport=st.sampled_from(TRANSPORTS), keyed=st.booleans(), reuse=st.booleans())
    def create(self, data: st.DataObject, transport: Transport, keyed: bool, reuse: bool) -> None:
        user = {**self.fresh_user(data, reuse), "password": new_password()}
        key = str(uuid.uuid4()) if keyed else None
        ids = self.create_as_model_predicts(transport, [user], key, batch=False)
        if key is not None and ids:
            self.keys[key] = Key(False, [user], ids)

    @rule(
        data=st.data(),
        transport=st.sampled_from(TRANSPORTS),
        keyed=st.booleans(),
        schemes=st.lists(st.sampled_from((None, *SCHEMES)), min_size=1, max_size=3),
        reuse=st.booleans(),
    )
    def batch_create(
        self, data: st.DataObject, transport: Transport, keyed: bool, schemes: list[str | None], reuse: bool
    ) -> None:
        users = []
        for n, scheme in enumerate(schemes):
            user = self.fresh_user(data, reuse and n == 0)
            password = new_password()
            if scheme is None:
                user["password"] = password
            else:  # the model keeps the plaintext beside the hash; strip() leaves it out of the request
                user.update(password_hash=imported_hash(scheme, password), _password=password)
            users.append(user)
        key = str(uuid.uuid4()) if keyed else None
        ids = self.create_as_model_predicts(transport, users, key, batch=True)
        if key is not None and ids:
            self.keys[key] = Key(True, users, ids)

    @precondition(lambda self: bool(self.keys))
    @rule(data=st.data(), transport=st.sampled_from(TRANSPORTS))
    def replay(self, data: st.DataObject, transport: Transport) -> None:
        """The same request with the same key, over either transport (they share one key namespace)."""
        key = data.draw(st.sampled_from(list(self.keys)))
        sent = self.keys[key]
        people = [self.people[i] for i in sent.ids]
        if any(p.state in GONE for p in people):
            # Erasing or purging a user forgets the keys whose response holds it: the request is a new one.
            sent.ids = self.create_as_model_predicts(transport, sent.users, key, sent.batch) or sent.ids
            return
        outcome = self.send(transport, sent.users, key, sent.batch)
        if all(p.state == LIVE for p in people):
            self.expect(outcome, "ok")
            returned = outcome.body["users"] if sent.batch else [outcome.body]
            assert [u["id"] for u in returned] == sent.ids, outcome
        else:  # as for a single create, a replay may not claim users that are deleted
            self.expect(outcome, "created_user_deleted")

    @precondition(lambda self: bool(self.people))
    @rule(
        data=st.data(),
        transport=st.sampled_from(TRANSPORTS),
        name=st.sampled_from([*PERSONAL, "password"]),
        etag=st.sampled_from(["none", "current", "stale"]),
        reuse=st.booleans(),
    )
    def update(self, data: st.DataObject, transport: Transport, name: str, etag: str, reuse: bool) -> None:
        person = self.pick(data)
        value = new_password() if name == "password" else self.fresh_user(data, reuse)[name]
        tag = {"none": None, "current": f'"v{person.version}"', "stale": f'"v{person.version + 1}"'}[etag]
        outcome = self.world.run(self.world.client.update(transport, person.id, {name: value}, tag))
        if person.state != LIVE:
            self.expect(outcome, "not_found")
        elif etag == "stale":
            self.expect(outcome, "stale")
        elif name != "password" and (owner := self.live_owner(value)) is not None and owner is not person:
            self.expect(outcome, "already_exists")
        elif name != "password" and person.fields[name] == value:
            self.expect(outcome, "ok")  # no change, no new version
        else:
            self.expect(outcome, "ok")
            person.version += 1
            if name == "password":
                person.password = value
            else:
                self.touched.update((person.fields[name], value))
                person.fields[name] = value
                person.history.add(value)
            assert outcome.body["version"] == person.version, outcome

    @precondition(lambda self: bool(self.people))
    @rule(data=st.data(), transport=st.sampled_from(TRANSPORTS))
    def delete(self, data: st.DataObject, transport: Transport) -> None:
        person = self.pick(data)
        outcome = self.world.run(self.world.client.delete(transport, person.id))
        if person.state != LIVE:
            self.expect(outcome, "not_found")
            return
        self.expect(outcome, "ok")
        person.state, person.version = DELETED, person.version + 1
        self.touched.update(person.logins())

    @precondition(lambda self: bool(self.people))
    @rule(data=st.data(), transport=st.sampled_from(TRANSPORTS))
    def undelete(self, data: st.DataObject, transport: Transport) -> None:
        person = self.pick(data)
        outcome = self.world.run(self.world.client.undelete(transport, person.id))
        if person.state in GONE:
            self.expect(outcome, "not_found")
        elif person.state == LIVE or any(self.live_owner(login) for login in person.logins()):
            self.expect(outcome, "already_exists")
        else:
            self.expect(outcome, "ok")
            person.state, person.version = LIVE, person.version + 1
            self.touched.update(person.logins())
            assert outcome.body["version"] == person.version, outcome

    @precondition(lambda self: bool(self.people))
    @rule(data=st.data(), transport=st.sampled_from(TRANSPORTS))
    def erase(self, data: st.DataObject, transport: Transport) -> None:
        person = self.pick(data)
        person.hashes.update(self.stored_hashes([person.id]))
        outcome = self.world.run(self.world.client.erase(transport, person.id))
        if person.state == ERASED:
            self.expect(outcome, "not_found")
            return
        self.expect(outcome, "ok")  # active, deleted, or purged with its events still retained
        person.state = ERASED
        self.touched.update(person.logins())

    @precondition(lambda self: self.has(DELETED))
    @rule(data=st.data())
    def purge(self, data: st.DataObject) -> None:
        """What maintenance does at a deleted user's purge_time, brought forward to now."""
        person = self.pick(data, DELETED)
        person.hashes.update(self.stored_hashes([person.id]))
        self.world.run(purge_now(self.world.pool, person.id))
        person.state = PURGED
        self.touched.update(person.logins())

    @precondition(lambda self: bool(self.people))
    @rule(
        data=st.data(),
        transport=st.sampled_from(TRANSPORTS),
        by_email=st.booleans(),
        right=st.booleans(),
    )
    def verify_password(self, data: st.DataObject, transport: Transport, by_email: bool, right: bool) -> None:
        person = self.pick(data)
        login = person.logins()[by_email]
        self.verify(transport, login, person.password if right else new_password())

    @precondition(lambda self: bool(self.people))
    @rule(data=st.data(), transport=st.sampled_from(TRANSPORTS), right=st.booleans())
    def change_password(self, data: st.DataObject, transport: Transport, right: bool) -> None:
        person = self.pick(data)
        # A deactivated person's, or one without any, is checked against nothing: wrong, and counted.
        right = right and person.password is not None and person.active
        current, new = (person.password if right and person.password else new_password()), new_password()
        outcome = self.world.run(self.world.client.change_password(transport, person.id, current, new))
        if person.state != LIVE:
            self.expect(outcome, "not_found")
        elif person.failures >= LOCKOUT:
            self.expect(outcome, "locked")
        elif right:
            self.expect(outcome, "ok")
            person.password, person.failures, person.version = new, 0, person.version + 1
            assert outcome.body["version"] == person.version, outcome
        else:
            self.expect(outcome, "unauthenticated")
            person.failures += 1

    @precondition(lambda self: bool(self.people))
    @rule(data=st.data(), transport=st.sampled_from(TRANSPORTS))
    def unlock(self, data: st.DataObject, transport: Transport) -> None:
        person = self.pick(data)
        outcome = self.world.run(self.world.client.unlock(transport, person.id))
        if person.state != LIVE:
            self.expect(outcome, "not_found")
            return
        self.expect(outcome, "ok")
        person.failures = 0

    # --- SCIM's writes ----------------------------------------------------------------------------------------

    @rule(data=st.data(), reuse=st.booleans(), keep_password=st.booleans())
    def scim_create(self, data: st.DataObject, reuse: bool, keep_password: bool) -> None:
        """As an identity provider creates a user: no country, and usually no password."""
        user = self.fresh_user(data, reuse)
        del user["country"]
        if keep_password:
            user["password"] = new_password()
        resource = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user["nickname"],
            "name": {"givenName": user["first_name"], "familyName": user["last_name"]},
            "emails": [{"value": user["email"], "type": "work", "primary": True}],
            "active": True,
            **({"password": user["password"]} if keep_password else {}),
        }
        outcome = self.world.run(self.world.scim.create(resource))
        if self.taken(user):
            self.expect(outcome, "already_exists")
            return
        self.expect(outcome, "ok")
        assert outcome.body["version"] == 1, outcome
        self.record(outcome.body["id"], user)

    @precondition(lambda self: bool(self.people))
    @rule(
        data=st.data(),
        change=st.sampled_from(["okta_active", "entra_active", "user_name", "work_email"]),
        etag=st.sampled_from(["none", "current", "stale"]),
        reuse=st.booleans(),
    )
    def scim_patch(self, data: st.DataObject, change: str, etag: str, reuse: bool) -> None:
        person = self.pick(data)
        name, value, operation = "active", not person.active, {}
        if change == "okta_active":
            operation = {"op": "replace", "value": {"active": value}}
        elif change == "entra_active":
            operation = {"op": "Replace", "path": "active", "value": str(value)}  # "True" / "False"
        else:
            name = "nickname" if change == "user_name" else "email"
            value = self.fresh_user(data, reuse)[name]
            path = "userName" if change == "user_name" else 'emails[type eq "work"].value'
            operation = {"op": "replace", "path": path, "value": value}
        tag = {"none": None, "current": f'"v{person.version}"', "stale": f'"v{person.version + 1}"'}[etag]
        outcome = self.world.run(self.world.scim.patch(person.id, [operation], tag))
        if person.state != LIVE:
            self.expect(outcome, "not_found")
        elif etag == "stale":
            self.expect(outcome, "stale")
        elif name != "active" and (owner := self.live_owner(value)) is not None and owner is not person:
            self.expect(outcome, "already_exists")
        elif (person.active if name == "active" else person.fields[name]) == value:
            self.expect(outcome, "ok")  # no change, no new version
            assert outcome.body["version"] == person.version, outcome
        else:
            self.expect(outcome, "ok")
            person.version += 1
            if name == "active":
                person.active = bool(value)
            else:
                self.touched.update((person.fields[name], value))
                person.fields[name] = value
                person.history.add(value)
            assert outcome.body["version"] == person.version, outcome

    @precondition(lambda self: bool(self.people))
    @rule(data=st.data())
    def scim_delete(self, data: st.DataObject) -> None:
        person = self.pick(data)
        outcome = self.world.run(self.world.scim.delete(person.id))
        if person.state != LIVE:
            self.expect(outcome, "not_found")
            return
        self.expect(outcome, "ok")
        person.state, person.version = DELETED, person.version + 1
        self.touched.update(person.logins())

    # --- invariants, after every step ---------------------------------------------------------------------

    @invariant()
    def only_live_users_authenticate(self) -> None:
        """For each login whose holder changed in this step: the password of any user that had it and does not
        hold it now (deleted, erased, purged, or renamed) never authenticates it; its live holder's does."""
        self.steps += 1
        transport = TRANSPORTS[self.steps % 2]
        for login in sorted(self.touched):
            owner = self.live_owner(login)
            for person in self.people.values():
                if person is not owner and login in person.history:
                    self.verify(transport, login, person.password)
            if owner is not None:
                self.verify(transport, login, owner.password)
        self.touched.clear()

    @invariant()
    def a_login_names_at_most_one_live_user(self) -> None:
        logins = sorted({login for p in self.people.values() for login in p.logins()})
        rows = self.world.run(
            self.world.pool.fetch(
                """SELECT login, array_agg(id::text ORDER BY id) AS ids FROM unnest($1::text[]) AS login
                   JOIN users ON (nickname = login OR lower(email) = lower(login)) AND delete_time IS NULL
                   GROUP BY login""",
                logins,
            )
        )
        found = {row["login"]: row["ids"] for row in rows}
        for login in logins:
            owner = self.live_owner(login)
            assert found.get(login, []) == ([owner.id] if owner else []), (
                f"login {login} names live users {found.get(login)}; the model says {owner and owner.id}"
            )

    @invariant()
    def nothing_of_an_erased_user_is_left(self) -> None:
        """No column of any table holds an erased user's values (unless someone else holds them now), nor,
        outside the retained events, a purged user's."""
        # A purged user's retained events still hold its values, so they are not an erased user's to lose.
        for state, skip, others in ((ERASED, (), (ERASED,)), (PURGED, ("user_events",), GONE)):
            kept = set().union(*(p.history | p.hashes for p in self.people.values() if p.state not in others))
            gone = [p for p in self.people.values() if p.state == state]
            needles = sorted(set().union(*(p.history | p.hashes for p in gone)) - kept)
            found = self.world.run(occurrences(self.world.pool, needles, skip))
            assert found == [], f"{state} users' data is still in {found} ({[p.id for p in gone]})"

    @invariant()
    def the_feed_replays_to_the_table_and_the_table_is_the_model(self) -> None:
        ids = [uuid.UUID(i) for i in self.people]
        events = self.world.run(
            self.world.pool.fetch(
                "SELECT type, subject::text, data FROM user_events WHERE subject = ANY($1::uuid[]) ORDER BY tx, seq",
                ids,
            )
        )
        replayed: dict[str, tuple[object, ...]] = {}
        for event in events:
            kind = event["type"].rsplit(".", 2)[1]
            if kind in ("purged", "erased"):
                replayed.pop(event["subject"], None)
            elif "user" in event["data"]:
                replayed[event["subject"]] = row_of(event["data"]["user"])
        rows = self.world.run(
            self.world.pool.fetch(
                """SELECT id::text, first_name, last_name, nickname, email, country, version,
                          delete_time IS NOT NULL AS deleted, active FROM users WHERE id = ANY($1::uuid[])""",
                ids,
            )
        )
        table = {row["id"]: tuple(row)[1:] for row in rows}
        assert replayed == table, f"the event feed replays to {replayed}, the users table holds {table}"
        model = {
            p.id: (*(p.fields[k] for k in (*PERSONAL, "country")), p.version, p.state == DELETED, p.active)
            for p in self.people.values()
            if p.state not in GONE
        }
        assert {i: canonical(t) for i, t in table.items()} == {i: canonical(t) for i, t in model.items()}, (
            f"the users table holds {table}, the model {model}"
        )


def row_of(user: dict[str, Any]) -> tuple[object, ...]:
    return (
        *(user[k] for k in (*PERSONAL, "country")),
        user["version"],
        "delete_time" in user,
        user["active"],
    )


def canonical(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Emails compare case-insensitively."""
    return (*row[:3], row[3].lower(), *row[4:])


def strip(users: list[dict[str, str]]) -> list[dict[str, str]]:
    """The request as sent: without the plaintexts the model keeps beside imported hashes."""
    return [{k: v for k, v in u.items() if not k.startswith("_")} for u in users]


async def purge_now(pool: asyncpg.Pool, user_id: str) -> None:
    uid = uuid.UUID(user_id)
    await pool.execute("UPDATE users SET purge_time = now() WHERE id = $1", uid)
    for _ in range(600):  # the service's own maintenance round may hold the purge lock for a moment
        await purge_once(pool)
        if await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", uid) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"user {user_id} was not purged")


@pytest.fixture(scope="module")
async def service(database: str) -> AsyncIterator[RunningService]:
    async with in_process(database, **THROTTLE) as running:
        yield running


async def test_every_sequence_of_operations_keeps_the_invariants(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub, pool: asyncpg.Pool
) -> None:
    world = World(asyncio.get_running_loop(), Client(http, stub), pool, Scim(http))
    machine = type("UserLifecycle", (UserLifecycle,), {"world": world})
    await asyncio.to_thread(
        run_state_machine_as_test,
        machine,
        settings=settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,  # the same sequences on every run: CI is repeatable, and bounded in time
            # Shrinking replays the service many times over; explaining a shrunk failure would replay it again.
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
