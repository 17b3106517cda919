"""Level-based reconciliation: one worker per UserService, woken by watch events, timers and backoff.

`Controller` keeps a worker task per UserService. kopf's watch handlers (handlers.py) only feed it: the
UserService's latest body, and "kick" signals when an owned child or the optional CRDs change. A worker runs
one pass (reconcile.py), keeps what it returned, then sleeps until kicked, until the periodic resync, or (after
an error or while waiting for a Secret) until its exponential backoff expires.

Secrets are not watched (that would mean reading every Secret in the cluster): a pass reads the one Secret its
UserService references, and while it is missing the pass is retried with a backoff capped at `wait_max`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

from userservice_operator import status as status_mod
from userservice_operator.children import CLUSTER_CHILDREN, OPTIONAL_CHILDREN
from userservice_operator.children.common import owner_selector
from userservice_operator.children.promql import RUNBOOKS
from userservice_operator.crd import KIND
from userservice_operator.events import Recorder
from userservice_operator.kube import Kube
from userservice_operator.metrics import OperatorMetrics
from userservice_operator.reconcile import (
    CHILD_SELECTOR,
    Context,
    child_owner,
    optional_apis_present,
    reconcile,
)
from userservice_operator.spec import Manifest

log = logging.getLogger(__name__)
# The optional kinds' children as listed: (kind, "namespace/name") -> (owning UserService, resourceVersion)
Listing = dict[tuple[str, str], tuple[tuple[str, str] | None, str]]


@dataclass(frozen=True)
class ControllerConfig:
    resync_seconds: float = 300.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    crd_poll_seconds: float = 10.0
    wait_max: float = 10.0  # backoff cap while waiting for something outside the operator (the Secret)
    component: str = "userservice-operator"
    runbooks: str = RUNBOOKS  # where docs/runbooks.md is published: the alerts' runbook_url
    prometheus_url: str = ""  # where the error budgets of spec.slo are read (status.slo); empty: not read
    clusterwide: bool = True  # list the optional kinds cluster-wide (else in each namespace with workers)


def backoff(failures: int, base: float, limit: float) -> float:
    """Seconds to wait after `failures` consecutive failed passes: base, 2*base, 4*base ... at most limit."""
    if failures <= 0:
        return 0.0
    return float(min(base * 2 ** (failures - 1), limit))


def _key(body: Manifest) -> tuple[str, str]:
    return str(body["metadata"]["namespace"]), str(body["metadata"]["name"])


class Gate(asyncio.Event):
    """An Event, set from the start, that remembers when it was last set."""

    def __init__(self) -> None:
        super().__init__()
        super().set()
        self.since = time.monotonic()

    def set(self) -> None:
        if not self.is_set():
            self.since = time.monotonic()
        super().set()


class Controller:
    """Owns the per-UserService workers. Created once per running operator (kept in kopf's memo)."""

    def __init__(self, kube: Kube, metrics: OperatorMetrics, config: ControllerConfig | None = None) -> None:
        self.kube = kube
        self.metrics = metrics
        self.config = config or ControllerConfig()
        self.recorder = Recorder(kube, self.config.component)
        self.workers: dict[tuple[str, str], Worker] = {}
        self.optional_apis: bool | None = None
        self.last_pass = time.monotonic()  # when the last pass (of any worker) ended, success or not
        # Cleared by the leader election while the Lease could not be renewed: passes wait (see leader.keep).
        self.acting = Gate()
        self._crd_task: asyncio.Task[None] | None = None
        # (kind, namespace/name) -> (owner, resourceVersion) of the optional kinds' children at the last poll
        self._optional_seen: Listing | None = None

    def context(self) -> Context:
        return Context(
            self.kube, self.recorder, self.optional_apis, self.config.runbooks, self.config.prometheus_url
        )

    # --- inputs from the watch handlers -------------------------------------------------------------
    def observe(self, body: Manifest) -> None:
        key = _key(body)
        worker = self.workers.get(key)
        if worker is None or worker.uid != body["metadata"].get("uid"):
            if worker is not None:
                worker.stop()
            worker = Worker(self, body)
            self.workers[key] = worker
            self.metrics.managed.set(len(self.workers))
            worker.start()
        else:
            worker.body = body
            worker.kick((KIND, key[1], str(body["metadata"].get("resourceVersion"))))
        if self._crd_task is None:
            self._crd_task = asyncio.create_task(self._watch_crds(), name="optional-crds")

    def forget(self, namespace: str, name: str) -> None:
        worker = self.workers.pop((namespace, name), None)
        if worker is not None:
            worker.stop()
        self.metrics.managed.set(len(self.workers))

    async def collect(self, namespace: str, name: str) -> None:
        """Delete the cluster-scoped children of a UserService that no longer exists (or is being deleted).

        They cannot carry an ownerReference, so the garbage collector does not. Called on the UserService's
        deletion and on every event of such a child without a live worker, so a child left behind while the
        operator was down goes at its next start (the watch lists every existing object first).
        """
        try:
            live = await self.kube.get(KIND, namespace, name)
        except ApiException as exc:
            if exc.status == 403:  # a namespace this operator may not read (--namespace): not ours to judge
                return
            raise
        if live is not None and not live["metadata"].get("deletionTimestamp"):
            return
        for child in CLUSTER_CHILDREN:
            for obj in await self.kube.list(child.kind, None, owner_selector(namespace, name)):
                if await self.kube.delete(child.kind, None, obj["metadata"]["name"]):
                    log.info(
                        "deleted %s %s of deleted UserService %s/%s",
                        child.kind,
                        obj["metadata"]["name"],
                        namespace,
                        name,
                    )

    def kick(self, namespace: str, name: str, seen: tuple[str, str, str] | None = None) -> None:
        """Wake the worker of a UserService; `seen` is the (kind, name, resourceVersion) of the owned child
        whose watch event woke it."""
        worker = self.workers.get((namespace, name))
        if worker is not None:
            worker.kick(seen)

    def stalled(self, now: float) -> float:
        """Seconds that work has waited (a worker woken, or in a pass) while no pass completed; 0: none."""
        waiting = [w.due_since for w in self.workers.values() if w.due_since is not None]
        if not waiting or not self.acting.is_set():
            return 0.0  # nothing waits, or the work waits for the Lease (the API server), not for us
        return max(0.0, now - max(min(waiting), self.last_pass, self.acting.since))

    def kick_all(self) -> None:
        for worker in list(self.workers.values()):
            worker.kick()

    async def stop(self) -> None:
        if self._crd_task is not None:
            self._crd_task.cancel()
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for worker in self.workers.values():
            worker.stop()
        for task in [*tasks, *([self._crd_task] if self._crd_task else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- the optional CRDs (Prometheus Operator) ----------------------------------------------------
    def note_optional_apis(self, present: bool) -> None:
        """Record whether the optional CRDs exist; wake every worker when that changed."""
        changed = self.optional_apis is not None and present != self.optional_apis
        self.optional_apis = present
        if changed:
            log.info("monitoring.coreos.com CRDs %s", "appeared" if present else "disappeared")
            self.kick_all()

    async def _watch_crds(self) -> None:
        """Re-check the optional CRDs periodically, and the children of their kinds (never watched)."""
        while True:
            await asyncio.sleep(self.config.crd_poll_seconds)
            try:
                present = await optional_apis_present(self.kube)
                self.note_optional_apis(present)
                if present:
                    self.kick_changed(await self.list_optional_children())
                else:
                    self._optional_seen = None
            except Exception as exc:
                log.debug("monitoring CRD check failed: %s", exc)

    async def list_optional_children(self) -> Listing:
        """The labelled objects of the optional kinds in scope: (kind, namespace/name) -> (owner,
        resourceVersion). A kind answering 404 (its CRD went away since the check) has none."""
        scopes: list[str | None] = [None]
        if not self.config.clusterwide:
            scopes = [*sorted({ns for ns, _ in self.workers})]
        found: Listing = {}
        for child in OPTIONAL_CHILDREN:
            for namespace in scopes:
                try:
                    items = await self.kube.list(child.kind, namespace, CHILD_SELECTOR)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    continue
                for obj in items:
                    meta = obj.get("metadata") or {}
                    key = (child.kind, f"{meta.get('namespace')}/{meta.get('name')}")
                    found[key] = (child_owner(obj), str(meta.get("resourceVersion")))
        return found

    def kick_changed(self, found: Listing) -> None:
        """Wake the owners of the optional children that changed or vanished since the last poll (the
        first poll only records what is there: every worker runs a pass of its own when it starts)."""
        previous, self._optional_seen = self._optional_seen, found
        if previous is None:
            return
        for key, (owner, version) in found.items():
            if owner is not None and previous.get(key, (None, ""))[1] != version:
                self.kick(*owner, (key[0], key[1].partition("/")[2], version))
        for key in previous.keys() - found.keys():
            owner = previous[key][0]
            if owner is not None:
                self.kick(*owner)


class Worker:
    """Serialises the reconciles of one UserService."""

    def __init__(self, controller: Controller, body: Manifest) -> None:
        self.controller = controller
        self.body = body
        self.uid = body["metadata"].get("uid")
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.failures = 0
        self.last_error = ""
        # The objects' versions as the last pass wrote or read them, and the versions that woke the worker
        # during the pass that runs now (None: a wake-up that is not a watch event).
        self.versions: dict[tuple[str, str], str] = {}
        self.woken_by: list[tuple[str, str, str] | None] = []
        self.due_since: float | None = time.monotonic()  # since when a pass is wanted and has not ended

    def start(self) -> None:
        namespace, name = _key(self.body)
        self.task = asyncio.create_task(self._run(), name=f"reconcile/{namespace}/{name}")

    def kick(self, seen: tuple[str, str, str] | None = None) -> None:
        """Run a pass soon; not for the watch event of a version the last pass wrote itself (its echo)."""
        if seen is not None and self._echo(seen):
            return
        self.woken_by.append(seen)
        if self.due_since is None:
            self.due_since = time.monotonic()
        self.wake.set()

    def _echo(self, seen: tuple[str, str, str] | None) -> bool:
        return seen is not None and self.versions.get(seen[:2]) == seen[2]

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _next_delay(self, limit: float | None = None) -> float:
        self.failures += 1
        cfg = self.controller.config
        return backoff(self.failures, cfg.backoff_base, min(cfg.backoff_max, limit or cfg.backoff_max))

    def _failed(self, exc: Exception) -> float:
        """Count a failed pass; the backoff delay before the next one."""
        delay = self._next_delay()
        self.controller.metrics.reconciles.labels("error").inc()
        detail = (
            f"{exc.status} {exc.reason}: {str(exc.body)[:300]}" if isinstance(exc, ApiException) else str(exc)
        )
        namespace, name = _key(self.body)
        log.warning(
            "%s/%s: reconcile failed: %s; retrying in %.0fs",
            namespace,
            name,
            detail,
            delay,
            exc_info=not isinstance(exc, ApiException | OSError),
        )
        self.last_error = detail
        return delay

    async def report_failure(self) -> None:
        """Show a failed pass as Degraded=True, reason ReconcileError (other conditions untouched)."""
        us, detail = self.body, self.last_error[:1000]
        previous = status_mod.condition(us.get("status"), status_mod.DEGRADED)
        conditions = status_mod.degraded_on_failure(
            us.get("status"), detail, int(us["metadata"].get("generation", 0))
        )
        if conditions is None:
            return
        namespace, name = _key(us)
        try:
            updated = await self.controller.kube.patch_status(
                KIND, namespace, name, {"conditions": conditions}
            )
        except Exception as exc:  # the API server may be what failed
            log.debug("could not record the failure in the status: %s", exc)
            return
        us["status"] = updated.get("status") or us.get("status")
        if not previous or previous.get("reason") != status_mod.RECONCILE_ERROR:
            await self.controller.recorder.event(us, "Warning", status_mod.RECONCILE_ERROR, detail)

    async def _going_away(self, exc: ApiException) -> bool:
        """Whether a 403/404 comes from the UserService or its namespace being deleted."""
        if "being terminated" in str(exc.body):
            return True
        try:
            live = await self.controller.kube.get(KIND, *_key(self.body))
        except Exception:
            return False
        return live is None or bool(live["metadata"].get("deletionTimestamp"))

    async def _run(self) -> None:
        cfg = self.controller.config
        metrics = self.controller.metrics
        while True:
            await self.controller.acting.wait()
            self.wake.clear()
            self.woken_by.clear()
            started = time.monotonic()
            if self.due_since is None:
                self.due_since = started  # a resync: the pass itself is the work that waits
            try:
                outcome = await reconcile(self.controller.context(), self.body)
                self.controller.note_optional_apis(outcome.optional_apis)
                self.versions = outcome.versions
                if self.woken_by and all(self._echo(seen) for seen in self.woken_by):
                    self.wake.clear()  # every wake-up during the pass was the echo of its own writes
                if outcome.status is not None:
                    # Keep our copy current so the next pass (before the watch event arrives) compares with
                    # what we wrote.
                    self.body["status"] = outcome.status
                    self.body["metadata"]["resourceVersion"] = outcome.resource_version
                if outcome.retry:
                    delay = self._next_delay(cfg.wait_max)
                    metrics.reconciles.labels("retry").inc()
                    log.info("%s/%s: %s; retrying in %.0fs", *_key(self.body), outcome.retry, delay)
                else:
                    delay = cfg.resync_seconds
                    self.failures = 0
                    metrics.reconciles.labels("success").inc()
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status not in (403, 404) or not await self._going_away(exc):
                    delay = self._failed(exc)
                    await self.report_failure()
                else:
                    # The resource or its namespace is being deleted: nothing to do until told otherwise.
                    log.debug("%s/%s is going away", *_key(self.body))
                    delay = cfg.resync_seconds
                    metrics.reconciles.labels("retry").inc()
            except Exception as exc:
                delay = self._failed(exc)
                await self.report_failure()
            finally:
                ended = time.monotonic()
                metrics.reconcile_duration.observe(ended - started)
                self.controller.last_pass = ended
                if self.due_since is not None and self.due_since <= started:
                    self.due_since = None  # a wake-up during the pass still waits for the next one
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=delay)
