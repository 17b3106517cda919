"""Push delivery: every UserEventSubscription of this process's UserService gets each change event POSTed to
its sink, signed, in cursor order, at least once.

Every replica runs one `Deliveries`. Each round (SUBSCRIPTION_POLL_SECONDS) it lists the namespace's
subscriptions from the Kubernetes API, makes a delivery row for each new one, deletes the rows of deleted ones,
and claims leases: it renews those it holds and takes those whose holder stopped renewing. A `_Worker` runs
for each subscription held here. Deleting a subscription, or losing its lease, cancels its worker within a
round.

A worker reads events as the feed does (below the visibility horizon, in commit order), POSTs up to
maxInFlight of them at once, retries each until its sink answers 2xx (Retry-After on 429 and 503, otherwise
exponential backoff with jitter), then moves the cursor past them with the counters, and waits for that write
before its next POST. A process killed mid-window repeats at most that window. The cursor writes of all workers
are grouped (`_CursorWrites`). A worker never starts a POST after its lease's local deadline (the lease length
less one round), so two replicas overlap only by a POST already under way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from userservice import jsoncodec
from userservice.clients.kubernetes import KubeApi, KubeUnavailable
from userservice.clients.webhooks import Attempt, Sender
from userservice.core.feed import EventFeed
from userservice.domain import subscriptions as subs
from userservice.domain.events import Cursor, StartAt, StoredEvent
from userservice.metrics import Metrics
from userservice.signing import BadSigningKey, headers, parse_keys
from userservice.store import deliveries, outbox
from userservice.store.db import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

BATCH = 100  # events read per query
LAG_CAP = 100_000  # lag is counted up to this many events
BODIES_KEPT = 10 * BATCH  # encoded events kept for the other subscriptions reading the same ones


class _Expired(Exception):
    """Retention deleted an event before the sink took it: the worker skips to what is kept."""


@dataclass(frozen=True)
class Settings:
    namespace: str
    user_service: str
    poll: float  # how often subscriptions are listed and leases claimed
    lease: float  # a lease lapses this long after its last renewal
    status_interval: float  # at most one status write per subscription this often
    secret_reread: float  # a signing key is re-read this often (rotation)
    cluster_networks: tuple[subs.Network, ...]
    source: str  # CloudEvents source


class _CursorWrites:
    """The workers' cursor writes, grouped: a write goes out at once when none is under way, else with every
    other write that waited for it, in one statement. A commit wakes every subscription at once: one UPDATE
    each would be 1,000 statements a second for 50 subscriptions at 20 commits a second, more work for the
    service and PostgreSQL than the POSTs themselves."""

    def __init__(self, pool: asyncpg.Pool, holder: str) -> None:
        self._pool, self._holder = pool, holder
        self._waiting: dict[str, tuple[Cursor, int, asyncio.Future[bool]]] = {}
        self._writer: asyncio.Task[None] | None = None

    async def advance(self, uid: str, cursor: Cursor, delivered: int) -> bool:
        """Moves `uid`'s cursor (see deliveries.advance); False when this process no longer holds its lease."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(uid)
        # A worker waits for its write before its next; one stopped while waiting leaves a cancelled entry.
        assert waiting is None or waiting[2].done(), f"two cursor writes of {uid} at once"
        self._waiting[uid] = (cursor, delivered, done)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="delivery-cursors")
        return await done

    async def _write(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, {}
                try:
                    held = await deliveries.advance(
                        self._pool, self._holder, [(uid, c, n) for uid, (c, n, _) in group.items()]
                    )
                except Exception as exc:  # each waiting worker handles it as its own (e.g. the database away)
                    for _, _, done in group.values():
                        if not done.done():
                            done.set_exception(exc)
                    continue
                except BaseException:
                    for _, _, done in group.values():
                        done.cancel()
                    raise
                for uid, (_, _, done) in group.items():
                    if not done.done():
                        done.set_result(uid in held)
        finally:
            self._writer = None
            for _, _, done in self._waiting.values():
                done.cancel()
            self._waiting = {}


class Deliveries:
    def __init__(
        self, pool: asyncpg.Pool, kube: KubeApi, feed: EventFeed, metrics: Metrics, settings: Settings
    ) -> None:
        self._pool, self._kube, self._metrics = pool, kube, metrics
        self.settings = settings
        self.holder = f"{uuid.uuid4()}"
        self.cursors = _CursorWrites(pool, self.holder)
        self._workers: dict[str, _Worker] = {}
        # Shared by the workers until the next NOTIFY or round: one horizon, one read per cursor (caught-up
        # subscriptions sit at the same cursor), and the newest pruned event, refreshed each round.
        self._horizon: asyncio.Future[int] | None = None
        self._reads: dict[Cursor, asyncio.Future[list[StoredEvent]]] = {}
        self._bodies: dict[UUID, bytes] = {}
        self.pruned = Cursor(0, 0)
        self._list_error = ""  # why the last round could not list (logged when it changes)
        self._notified = asyncio.Event()
        feed.wakes(self._notified)
        self._path = (
            f"/apis/{subs.API_GROUP}/{subs.API_VERSION}/namespaces/{settings.namespace}/{subs.PLURAL}"
        )

    async def run(self) -> None:
        """Rounds until cancelled."""
        fan_out = asyncio.create_task(self._fan_out_wakeups(), name="deliveries-wakeups")
        try:
            while True:
                try:
                    await self.round()
                except (KubeUnavailable, *UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
                    log.warning("subscription round failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(self.settings.poll)
        finally:
            fan_out.cancel()

    async def close(self) -> None:
        """After `run` was cancelled: every worker stops, and this process's leases lapse at once so another
        replica takes over at its next round."""
        await self._stop_workers(list(self._workers))
        with contextlib.suppress(*UNAVAILABLE_ERRORS, asyncpg.PostgresError):
            await deliveries.release(self._pool, self.holder)
        await self._kube.close()

    async def _fan_out_wakeups(self) -> None:
        while True:
            await self._notified.wait()
            self._notified.clear()
            self._refresh()
            for worker in self._workers.values():
                worker.wakeup.set()

    def _refresh(self) -> None:
        """Something may have committed: the next reads take a new horizon."""
        self._horizon = None
        self._reads = {}
        if len(self._bodies) > BODIES_KEPT:
            self._bodies = {}

    async def _read_horizon(self) -> int:
        return (await outbox.horizon(self._pool)).tx

    async def horizon(self) -> int:
        """The visibility horizon, one query for every worker between two NOTIFYs (an older horizon only
        delays: every event below it has committed)."""
        if self._horizon is None:
            self._horizon = asyncio.ensure_future(self._read_horizon())
        return await asyncio.shield(self._horizon)

    def body(self, event: StoredEvent) -> bytes:
        """The event as POSTed (the same bytes for every subscription; kept for the current reads)."""
        encoded = self._bodies.get(event.id)
        if encoded is None:
            encoded = self._bodies[event.id] = jsoncodec.dumps(event.cloud_event(self.settings.source))
        return encoded

    async def events_after(self, cursor: Cursor) -> list[StoredEvent]:
        """The next events after `cursor` in commit order, below the shared horizon; workers at the same
        cursor share one query."""
        shared = self._reads
        before = await self.horizon()
        read = shared.get(cursor)
        if read is None:
            read = shared[cursor] = asyncio.ensure_future(
                outbox.read_after(self._pool, cursor, before, BATCH)
            )
        return await asyncio.shield(read)

    async def _listed(self) -> dict[str, tuple[subs.Subscription, dict[str, Any]]]:
        """This instance's subscriptions by uid, with their status. Raises KubeUnavailable when the API cannot
        say (then no row is deleted and no worker stopped for it)."""
        listed = await self._kube.get(self._path)
        if listed is None:
            raise KubeUnavailable("the UserEventSubscription API is not served (is its CRD installed?)")
        found: dict[str, tuple[subs.Subscription, dict[str, Any]]] = {}
        for item in listed.get("items") or []:
            if (item.get("spec") or {}).get("userService") != self.settings.user_service:
                continue
            try:
                sub = subs.from_manifest(item)
            except (subs.BadSubscription, ValueError) as exc:
                log.warning(
                    "subscription cannot be delivered",
                    extra={"subscription": item["metadata"].get("name"), "error": str(exc)},
                )
                continue
            found[sub.uid] = (sub, dict(item.get("status") or {}))
        return found

    async def _start_cursor(self, sub: subs.Subscription) -> Cursor:
        if sub.start_at is StartAt.NOW:
            return Cursor((await outbox.horizon(self._pool)).tx, 0)
        if sub.start_at is StartAt.EARLIEST:
            return await outbox.pruned_through(self._pool)
        assert isinstance(sub.start_at, Cursor)
        return sub.start_at

    async def round(self) -> None:
        """One round: list, make and forget rows, claim leases, start and stop workers. While the API server
        cannot list, the leases held are still renewed: delivery goes on for what is known."""
        self._refresh()  # a NOTIFY may have been missed: nothing read before this round is reused
        self.pruned = await outbox.pruned_through(self._pool)
        try:
            listed = await self._listed()
            self._list_error = ""
        except KubeUnavailable as exc:
            if str(exc) != self._list_error:  # once per cause, not every round
                log.warning("cannot list subscriptions; renewing the leases held", extra={"error": str(exc)})
            self._list_error = str(exc)
            listed = None
        if listed is not None:
            new = set(listed) - await deliveries.known(self._pool, list(listed))
            for uid, (sub, _) in listed.items():
                worker = self._workers.get(uid)
                if uid in new or (
                    worker is not None
                    and (worker.sub.types, worker.sub.generation) != (sub.types, sub.generation)
                ):
                    await deliveries.ensure(
                        self._pool,
                        uid,
                        sub.namespace,
                        sub.user_service,
                        sub.name,
                        None if sub.types is None else sorted(sub.types),
                        sub.generation,
                        await self._start_cursor(sub) if uid in new else Cursor(0, 0),
                    )
            await self._stop_workers([uid for uid in self._workers if uid not in listed])
            await deliveries.forget_except(
                self._pool, self.settings.namespace, self.settings.user_service, list(listed)
            )
        wanted = list(listed) if listed is not None else list(self._workers)
        claimed_at = time.monotonic()
        held = await deliveries.claim(self._pool, self.holder, wanted, self.settings.lease)
        await self._stop_workers([uid for uid in self._workers if uid not in held])
        deadline = claimed_at + self.settings.lease - self.settings.poll
        for uid in held:
            worker = self._workers.get(uid)
            if worker is None and listed is not None:
                sub, status = listed[uid]
                worker = self._workers[uid] = _Worker(self, sub, status)
                worker.start()
                log.info("delivering subscription", extra={"subscription": sub.name})
            if worker is not None:
                if listed is not None:
                    worker.update(listed[uid][0])
                worker.lease_deadline = deadline
                worker.lease_renewed.set()

    async def _stop_workers(self, uids: list[str]) -> None:
        workers = [self._workers.pop(uid) for uid in uids if uid in self._workers]
        await asyncio.gather(*(w.stop() for w in workers))
        for worker in workers:
            log.info("stopped delivering subscription", extra={"subscription": worker.sub.name})

    @property
    def delivering(self) -> set[str]:
        """Names of the subscriptions this process delivers now."""
        return {w.sub.name for w in self._workers.values()}


class _Worker:
    """Delivers one subscription while this process holds its lease."""

    def __init__(self, owner: Deliveries, sub: subs.Subscription, status: dict[str, Any]) -> None:
        self.owner, self.sub = owner, sub
        self._pool, self._metrics = owner._pool, owner._metrics
        self.wakeup = asyncio.Event()
        self.lease_deadline = 0.0
        self.lease_renewed = asyncio.Event()
        self._sender = Sender(sub.url, owner.settings.cluster_networks, sub.allow_outside_cluster)
        self._cursor: Cursor | None = None  # as in the row, which only this process moves while it holds it
        self._keys: tuple[bytes, ...] | None = None
        self._keys_read_at = -1e9
        self._problem: tuple[str, str] | None = None
        self._written = status  # the status as last written (or listed)
        self._status_due = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Bound once: .labels() validates and locks on every call, and these run on every delivery.
        self._delivered = self._metrics.subscription_deliveries.labels(sub.name, "delivered")
        self._latency = self._metrics.subscription_latency.labels(sub.name)

    def start(self) -> None:
        name = self.sub.name
        self._tasks = [
            asyncio.create_task(self._deliver_forever(), name=f"deliver-{name}"),
            asyncio.create_task(self._report_forever(), name=f"status-{name}"),
        ]

    def update(self, sub: subs.Subscription) -> None:
        if sub == self.sub:
            return
        changed_sink = (sub.url, sub.allow_outside_cluster) != (self.sub.url, self.sub.allow_outside_cluster)
        if changed_sink:
            old, self._sender = (
                self._sender,
                Sender(sub.url, self.owner.settings.cluster_networks, sub.allow_outside_cluster),
            )
            asyncio.create_task(old.close())  # noqa: RUF006 # closing an idle client; nothing waits for it
        if (sub.secret_name, sub.secret_key) != (self.sub.secret_name, self.sub.secret_key):
            self._keys_read_at = -1e9
        self.sub = sub
        self._status_due.set()
        self.wakeup.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._sender.close()
        for metric in (self._metrics.subscription_lag_events, self._metrics.subscription_lag_seconds):
            with contextlib.suppress(KeyError):
                metric.remove(self.sub.name)

    # --- delivering ----------------------------------------------------------------------------------------
    async def _deliver_forever(self) -> None:
        poll = self.owner.settings.poll
        while True:
            try:
                more = await self._deliver_some()
            except _Expired:
                continue
            except (KubeUnavailable, *UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("delivery paused", extra={"subscription": self.sub.name, "error": str(exc)})
                more = False
            if not more:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll):
                        await self.wakeup.wait()
                self.wakeup.clear()

    async def _deliver_some(self) -> bool:
        """Delivers the next batch; True when there may be more right away."""
        if self._cursor is None:
            row = await deliveries.load(self._pool, self.sub.uid)
            if row is None:
                return False  # the round forgets this worker soon
            self._cursor = row.cursor
        pruned = self.owner.pruned
        if self._cursor < pruned:
            await deliveries.skip_expired(self._pool, self.sub.uid, self.owner.holder, pruned)
            self._status_due.set()
            self._cursor = pruned
        batch = await self.owner.events_after(self._cursor)
        window = max(1, self.sub.delivery.max_in_flight)
        for start in range(0, len(batch), window):
            events = batch[start : start + window]
            wanted = [e for e in events if self.sub.wants(e.type)]
            if len(wanted) == 1:  # maxInFlight 1, the default: no task needed
                await self._deliver(wanted[0])
            elif wanted:
                await self._deliver_window(wanted)
            if not await self.owner.cursors.advance(self.sub.uid, events[-1].cursor, len(wanted)):
                self.lease_deadline = 0.0  # another process took the lease: no more POSTs; the round ends us
                self._cursor = None
                return False
            self._cursor = events[-1].cursor
            if wanted:
                self._problem = None
                self._status_due.set()
        if not batch:
            self._status_due.set()  # lag may have changed (e.g. events of unwanted types only)
        return len(batch) == BATCH

    async def _deliver_window(self, events: list[StoredEvent]) -> None:
        """POSTs the events at once; one failing for good (expired, the database) cancels the others."""
        try:
            async with asyncio.TaskGroup() as window:
                for event in events:
                    window.create_task(self._deliver(event))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None

    async def _lease_held(self) -> None:
        """Returns once the lease's local deadline lies ahead (it is renewed every round)."""
        while time.monotonic() >= self.lease_deadline:
            self.lease_renewed.clear()
            await self.lease_renewed.wait()

    async def _signing_keys(self) -> tuple[bytes, ...] | None:
        settings = self.owner.settings
        if time.monotonic() - self._keys_read_at < settings.secret_reread and self._keys is not None:
            return self._keys
        path = f"/api/v1/namespaces/{self.sub.namespace}/secrets/{self.sub.secret_name}"
        try:
            secret = await self.owner._kube.get(path)
        except KubeUnavailable:
            if self._keys is None:
                raise
            return self._keys  # the API server is away: the keys last read still sign
        data = (secret or {}).get("data") or {}
        where = f"Secret {self.sub.secret_name!r} key {self.sub.secret_key!r} (spec.signingSecretRef)"
        self._keys = None
        if secret is None:
            self._problem = (subs.SIGNING_SECRET_MISSING, f"Secret {self.sub.secret_name!r} does not exist")
        elif self.sub.secret_key not in data:
            self._problem = (subs.SIGNING_SECRET_MISSING, f"{where} does not exist")
        else:
            try:
                self._keys = parse_keys(base64.b64decode(data[self.sub.secret_key]).decode())
                self._keys_read_at = time.monotonic()
            except (BadSigningKey, ValueError) as exc:
                self._problem = (subs.SIGNING_SECRET_MISSING, f"{where}: {exc}")
        return self._keys

    async def _deliver(self, event: StoredEvent) -> None:
        """POSTs one event until its sink answers 2xx; raises _Expired when retention deletes it first."""
        body = self.owner.body(event)
        name = self.sub.name
        attempt = 0
        while True:
            await self._lease_held()
            keys = await self._signing_keys()
            if keys is None:
                outcome = "no_signing_key"
                result: Attempt | None = None
            else:
                result = await self._sender.post(
                    body,
                    headers(keys, str(event.id), int(time.time()), body),
                    self.sub.delivery.timeout,
                )
                outcome = _outcome(result)
            if result is not None and result.ok:
                self._delivered.inc()
                self._latency.observe(max(0.0, (datetime.now(UTC) - event.time).total_seconds()))
                return
            self._metrics.subscription_deliveries.labels(name, outcome).inc()
            if result is not None:
                self._problem = (result.reason, result.message)
            self._status_due.set()
            attempt += 1
            await deliveries.failed(self._pool, self.sub.uid, self.owner.holder)
            pruned = await outbox.pruned_through(self._pool)
            if pruned >= event.cursor:
                self.owner.pruned = max(self.owner.pruned, pruned)  # the next batch skips past it
                raise _Expired
            delay = subs.backoff(attempt, self.sub.delivery.min_backoff, self.sub.delivery.max_backoff)
            if result is not None and result.status in (429, 503):
                delay = (
                    subs.retry_after(
                        result.retry_after,
                        datetime.now(UTC),
                        self.sub.delivery.min_backoff,
                        self.sub.delivery.max_backoff,
                    )
                    or delay
                )
            await asyncio.sleep(delay)

    # --- reporting -----------------------------------------------------------------------------------------
    async def _report_forever(self) -> None:
        interval = self.owner.settings.status_interval
        while True:
            await self._status_due.wait()
            self._status_due.clear()
            try:
                await self._report()
            except (KubeUnavailable, *UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("status not written", extra={"subscription": self.sub.name, "error": str(exc)})
                self._status_due.set()
            await asyncio.sleep(interval)

    async def _report(self) -> None:
        row = await deliveries.load(self._pool, self.sub.uid)
        if row is None:
            return
        types = None if self.sub.types is None else sorted(self.sub.types)
        lag_events, lag_seconds = await deliveries.lag(
            self._pool, row.cursor, await self.owner.horizon(), types, LAG_CAP
        )
        self._metrics.subscription_lag_events.labels(self.sub.name).set(lag_events)
        self._metrics.subscription_lag_seconds.labels(self.sub.name).set(lag_seconds)
        progress = subs.Progress(
            row.cursor,
            lag_events,
            lag_seconds,
            row.last_delivered_at,
            row.delivered,
            row.failed,
            row.expired,
            row.expired_generation,
            self._problem,
        )
        new = subs.status(self.sub, progress, self._written, datetime.now(UTC))
        if not subs.status_differs(self._written, new):
            return
        path = f"{self.owner._path}/{self.sub.name}/status"
        if await self.owner._kube.merge_patch(path, {"status": new}):
            self._written = new


def _outcome(result: Attempt) -> str:
    """The outcome label of one attempt."""
    if result.ok:
        return "delivered"
    if result.status in (429, 503):
        return "throttled"
    if result.status is not None:
        return "rejected"
    return "refused" if result.reason == subs.SINK_REFUSED else "unreachable"
