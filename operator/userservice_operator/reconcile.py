"""Level-based reconciliation: one worker per UserService, woken by watch events, timers and backoff.

`Controller` keeps a worker task per UserService. kopf's watch handlers (handlers.py) only feed it: the
UserService's latest body, and "kick" signals when an owned child, a referenced Secret or the monitoring CRDs
change. A worker runs `reconcile` — apply(children(spec)) + status — then sleeps until kicked, until the
periodic resync, or (after an error or while waiting for a Secret) until its exponential backoff expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from userservice_operator import status as status_mod
from userservice_operator.apply import Kube, apply
from userservice_operator.children import (
    deployment,
    hpa,
    migration,
    pdb,
    prometheusrule,
    service,
    servicemonitor,
)
from userservice_operator.children.common import (
    MANAGED_BY,
    MIGRATION_HASH_LABEL,
    Manifest,
    migrations_enabled,
    name_of,
    namespace_of,
    secret_ref,
    spec_of,
)
from userservice_operator.children.migration import JobPhase, MigrationState
from userservice_operator.crd import API_VERSION, KIND
from userservice_operator.metrics import OperatorMetrics
from userservice_operator.status import Observation, Problem

log = logging.getLogger(__name__)
MONITORING_CRDS = ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")


@dataclass(frozen=True)
class ControllerConfig:
    resync_seconds: float = 300.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    crd_poll_seconds: float = 10.0
    component: str = "userservice-operator"


class RetryLater(Exception):
    """The reconcile made what progress it could; try again after backoff (e.g. missing Secret)."""


class Recorder:
    """Posts core/v1 Events about a UserService."""

    def __init__(self, kube: Kube, component: str) -> None:
        self.kube = kube
        self.component = component
        self.host = socket.gethostname()

    async def event(self, us: Manifest, kind: str, reason: str, message: str) -> None:
        ts = status_mod.now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name_of(us)}.{uuid.uuid4().hex[:16]}", "namespace": namespace_of(us)},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": name_of(us),
                "namespace": namespace_of(us),
                "uid": us["metadata"].get("uid"),
                "resourceVersion": us["metadata"].get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": f"{self.host}-{os.getpid()}",
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        try:
            await self.kube.create("Event", namespace_of(us), body)
        except Exception as exc:  # events are best effort
            log.warning("could not post event %s: %s", reason, exc)


class Controller:
    """Owns the per-UserService workers. Created once per running operator (kept in kopf's memo)."""

    def __init__(self, kube: Kube, metrics: OperatorMetrics, config: ControllerConfig | None = None) -> None:
        self.kube = kube
        self.metrics = metrics
        self.config = config or ControllerConfig()
        self.recorder = Recorder(kube, self.config.component)
        self.workers: dict[tuple[str, str], Worker] = {}
        self.monitoring_crds: bool | None = None
        self._crd_task: asyncio.Task[None] | None = None

    # --- inputs from the watch handlers -------------------------------------------------------------
    def observe(self, body: Manifest) -> None:
        key = (namespace_of(body), name_of(body))
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
            worker.kick()
        if self._crd_task is None:
            self._crd_task = asyncio.create_task(self._watch_crds(), name="monitoring-crds")

    def forget(self, namespace: str, name: str) -> None:
        worker = self.workers.pop((namespace, name), None)
        if worker is not None:
            worker.stop()
        self.metrics.managed.set(len(self.workers))

    def kick(self, namespace: str, name: str) -> None:
        worker = self.workers.get((namespace, name))
        if worker is not None:
            worker.kick()

    def kick_secret(self, namespace: str, secret: str) -> None:
        for (ns, _), worker in list(self.workers.items()):
            if ns == namespace and worker.secret_name == secret:
                worker.kick()

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

    # --- monitoring CRDs ----------------------------------------------------------------------------
    async def check_monitoring_crds(self) -> bool:
        found = True
        for crd in MONITORING_CRDS:
            obj = await self.kube.get("CustomResourceDefinition", None, crd)
            established = any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in ((obj or {}).get("status") or {}).get("conditions") or []
            )
            found = found and established
        return found

    async def _watch_crds(self) -> None:
        """Re-check the monitoring CRDs periodically; wake every worker when they appear or vanish."""
        while True:
            await asyncio.sleep(self.config.crd_poll_seconds)
            try:
                present = await self.check_monitoring_crds()
            except Exception as exc:
                log.debug("monitoring CRD check failed: %s", exc)
                continue
            if self.monitoring_crds is not None and present != self.monitoring_crds:
                log.info("monitoring.coreos.com CRDs %s", "appeared" if present else "disappeared")
                self.monitoring_crds = present
                self.kick_all()
            self.monitoring_crds = present


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

    @property
    def secret_name(self) -> str:
        try:
            return secret_ref(self.body)[0]
        except (KeyError, TypeError):
            return ""

    def start(self) -> None:
        self.task = asyncio.create_task(
            self._run(), name=f"reconcile/{namespace_of(self.body)}/{name_of(self.body)}"
        )

    def kick(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _failed(self, exc: Exception) -> float:
        """Count a failed pass; the backoff delay before the next one."""
        cfg = self.controller.config
        self.failures += 1
        delay = float(min(cfg.backoff_base * 2 ** (self.failures - 1), cfg.backoff_max))
        self.controller.metrics.reconciles.labels("error").inc()
        detail = (
            f"{exc.status} {exc.reason}: {str(exc.body)[:300]}" if isinstance(exc, ApiException) else str(exc)
        )
        log.warning(
            "%s/%s: reconcile failed: %s; retrying in %.0fs",
            namespace_of(self.body),
            name_of(self.body),
            detail,
            delay,
            exc_info=not isinstance(exc, ApiException | OSError),
        )
        self.last_error = detail
        return delay

    async def report_failure(self) -> None:
        """Show a failed pass as Degraded=True, reason ReconcileError (other conditions untouched)."""
        us, detail = self.body, self.last_error[:1000]
        conditions = [dict(c) for c in (us.get("status") or {}).get("conditions") or []]
        previous = next((c for c in conditions if c.get("type") == status_mod.DEGRADED), None)
        if previous and previous.get("reason") == "ReconcileError" and previous.get("message") == detail:
            return
        degraded = {
            "type": status_mod.DEGRADED,
            "status": "True",
            "reason": "ReconcileError",
            "message": detail,
            "observedGeneration": int(us["metadata"].get("generation", 0)),
        }
        (degraded,) = status_mod.merge_conditions(conditions, [degraded], status_mod.now())
        if previous is None:
            conditions.append(degraded)
        else:
            conditions[conditions.index(previous)] = degraded
        try:
            updated = await self.controller.kube.patch_status(
                "UserService", namespace_of(us), name_of(us), {"conditions": conditions}
            )
        except Exception as exc:  # the API server may be what failed
            log.debug("could not record the failure in the status: %s", exc)
            return
        us["status"] = updated.get("status") or us.get("status")
        if not previous or previous.get("reason") != "ReconcileError":
            await self.controller.recorder.event(us, "Warning", "ReconcileError", detail)

    async def _going_away(self, exc: ApiException) -> bool:
        """Whether a 403/404 comes from the UserService or its namespace being deleted."""
        if "being terminated" in str(exc.body):
            return True
        try:
            live = await self.controller.kube.get("UserService", namespace_of(self.body), name_of(self.body))
        except Exception:
            return False
        return live is None or bool(live["metadata"].get("deletionTimestamp"))

    async def _run(self) -> None:
        cfg = self.controller.config
        metrics = self.controller.metrics
        while True:
            self.wake.clear()
            started = time.monotonic()
            try:
                await reconcile(self.controller, self.body)
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
                    log.debug("%s/%s is going away", namespace_of(self.body), name_of(self.body))
                    delay = cfg.resync_seconds
                    metrics.reconciles.labels("retry").inc()
            except RetryLater as exc:
                self.failures += 1
                delay = float(min(cfg.backoff_base * 2 ** (self.failures - 1), cfg.backoff_max))
                metrics.reconciles.labels("retry").inc()
                log.info(
                    "%s/%s: %s; retrying in %.0fs", namespace_of(self.body), name_of(self.body), exc, delay
                )
            except Exception as exc:
                delay = self._failed(exc)
                await self.report_failure()
            finally:
                metrics.reconcile_duration.observe(time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=delay)


def _owned(us: Manifest, obj: Manifest | None) -> bool:
    uid = us["metadata"].get("uid")
    return obj is not None and any(
        ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []
    )


async def _ensure(
    ctx: Controller, us: Manifest, desired: Manifest | None, kind: str, name: str
) -> Manifest | None:
    """Apply `desired`, or delete our object of that kind/name when `desired` is None."""
    ns = namespace_of(us)
    if desired is None:
        live = await ctx.kube.get(kind, ns, name)
        if _owned(us, live) and await ctx.kube.delete(kind, ns, name):
            await ctx.recorder.event(
                us, "Normal", "Deleted", f"deleted {kind} {name} (no longer wanted by spec)"
            )
        return None
    try:
        result = await apply(ctx.kube, desired)
    except ApiException as exc:
        # 422: the live object cannot be brought back by apply (an immutable field changed, or list entries
        # someone else took over collide with ours). Ours to manage: replace it.
        live = await ctx.kube.get(kind, ns, name)
        if exc.status != 422 or not _owned(us, live):
            raise
        log.warning("%s %s/%s cannot be patched (%s); re-creating it", kind, ns, name, exc.reason)
        await ctx.kube.delete(kind, ns, name)
        await ctx.recorder.event(
            us, "Warning", "Recreated", f"re-created {kind} {name}: {str(exc.body)[:300]}"
        )
        result = await apply(ctx.kube, desired, None, fetched=True)
    if result.action == "created":
        await ctx.recorder.event(us, "Normal", "Created", f"created {kind} {name}")
    elif result.action == "configured":
        await ctx.recorder.event(us, "Normal", "Applied", f"applied {kind} {name} (spec change or drift)")
    return result.live


async def _migrate(ctx: Controller, us: Manifest) -> MigrationState:
    """Make sure the migration Job for the current image exists; report its phase."""
    ns = namespace_of(us)
    job = migration.build(us)
    name = job["metadata"]["name"]
    done = ((us.get("status") or {}).get("migration") or {}).get("completedHash")
    live = await ctx.kube.get("Job", ns, name)
    if live is None and done == migration.migration_hash(us):
        return MigrationState(JobPhase.SUCCEEDED, name, f"Job {name} completed")
    if live is None:
        live = (await apply(ctx.kube, job, None, fetched=True)).live
        await ctx.recorder.event(
            us,
            "Normal",
            "MigrationStarted",
            f"started Job {name} to migrate the schema for {spec_of(us)['image']}",
        )
    state = migration.job_state(live)
    if state.phase is JobPhase.SUCCEEDED:
        await _prune_jobs(ctx, us, keep=name)
    return state


async def _prune_jobs(ctx: Controller, us: Manifest, keep: str) -> None:
    selector = f"app.kubernetes.io/instance={name_of(us)},app.kubernetes.io/component=migration"
    for job in await ctx.kube.list("Job", namespace_of(us), selector):
        jname = job["metadata"]["name"]
        if (
            jname != keep
            and _owned(us, job)
            and MIGRATION_HASH_LABEL in (job["metadata"].get("labels") or {})
        ):
            await ctx.kube.delete("Job", namespace_of(us), jname)


async def _check_secret(ctx: Controller, us: Manifest) -> Problem | None:
    name, key = secret_ref(us)
    secret = await ctx.kube.get("Secret", namespace_of(us), name)
    if secret is None:
        return Problem("SecretNotFound", f"Secret {name!r} (spec.database.secretRef) does not exist")
    if key not in (secret.get("data") or {}) and key not in (secret.get("stringData") or {}):
        return Problem(
            "SecretKeyNotFound", f"Secret {name!r} has no key {key!r} (spec.database.secretRef.key)"
        )
    return None


async def reconcile(ctx: Controller, us: Manifest) -> None:
    """One pass: apply every wanted child (in order), delete unwanted ones, write status if it changed."""
    ns, name = namespace_of(us), name_of(us)
    spec = spec_of(us)
    image = str(spec["image"])
    old_status = us.get("status") or {}
    if ctx.monitoring_crds is None:
        ctx.monitoring_crds = await ctx.check_monitoring_crds()

    apply_problem: Problem | None = None
    await _ensure(ctx, us, service.build(us), "Service", name)
    await _ensure(ctx, us, pdb.build(us), "PodDisruptionBudget", name)

    sm, rule = servicemonitor.build(us), prometheusrule.build(us)
    monitoring_requested = sm is not None or rule is not None
    if ctx.monitoring_crds:
        try:
            await _ensure(ctx, us, sm, "ServiceMonitor", name)
            await _ensure(ctx, us, rule, "PrometheusRule", name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            ctx.monitoring_crds = await ctx.check_monitoring_crds()  # the CRDs went away
            if ctx.monitoring_crds:
                raise

    secret_problem = await _check_secret(ctx, us)
    live_dep = await ctx.kube.get("Deployment", ns, name)
    mig = MigrationState(JobPhase.DISABLED)
    held = False
    completed = dict(old_status.get("migration") or {})
    completed.pop("job", None)
    completed.pop("image", None)
    if secret_problem is None:
        if migrations_enabled(us):
            mig = await _migrate(ctx, us)
            if mig.phase is JobPhase.SUCCEEDED:
                completed = {"completedHash": migration.migration_hash(us), "completedImage": image}
            elif mig.phase is JobPhase.FAILED and old_status.get("migration", {}).get("job") != mig.job:
                await ctx.recorder.event(us, "Warning", "MigrationFailed", f"{mig.message}; rollout held")
        live_image, live_replicas = None, None
        if live_dep is not None:
            live_image = live_dep["spec"]["template"]["spec"]["containers"][0].get("image")
            live_replicas = live_dep["spec"].get("replicas")
        plan = migration.plan_rollout(us, mig, live_image, live_replicas)
        held = plan.held
        try:
            live_dep = await _ensure(
                ctx, us, deployment.build(us, image=plan.image, replicas=plan.replicas), "Deployment", name
            )
            await _ensure(
                ctx, us, hpa.build(us) if plan.replicas is None else None, "HorizontalPodAutoscaler", name
            )
        except ApiException as exc:
            if exc.status not in (409, 422):
                raise
            apply_problem = Problem("ApplyFailed", f"{exc.status} {exc.reason}: {str(exc.body)[:500]}")
    elif migrations_enabled(us):
        mig = MigrationState(JobPhase.PENDING)

    obs = Observation(
        generation=int(us["metadata"].get("generation", 0)),
        image=image,
        secret_problem=secret_problem,
        apply_problem=apply_problem,
        migration=mig,
        rollout_held=held,
        deployment=live_dep,
        monitoring_requested=monitoring_requested,
        monitoring_available=bool(ctx.monitoring_crds),
        completed_migration=completed,
    )
    await _write_status(ctx, us, obs)
    if secret_problem is not None:
        raise RetryLater(secret_problem.message)


async def _write_status(ctx: Controller, us: Manifest, obs: Observation) -> None:
    old_status = us.get("status") or {}
    new_status = status_mod.finalize(old_status, status_mod.compute(us, obs))
    if not status_mod.needs_update(old_status, new_status):
        return
    before = {c["type"]: c for c in old_status.get("conditions") or []}
    for event_type, reason, message in condition_events(before, new_status["conditions"]):
        await ctx.recorder.event(us, event_type, reason, message)
    try:
        updated = await ctx.kube.patch_status("UserService", namespace_of(us), name_of(us), new_status)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    # Keep our copy current so the next pass (before the watch event arrives) compares with what we wrote.
    us["status"] = updated.get("status", new_status)
    us["metadata"]["resourceVersion"] = updated["metadata"].get("resourceVersion")


def child_owner(body: Manifest) -> tuple[str, str] | None:
    """(namespace, name) of the UserService owning a child, from its ownerReferences."""
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith("userservice.io/"):
            return str(body["metadata"].get("namespace")), str(ref.get("name"))
    return None


CHILD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"


def condition_events(
    before: dict[str, dict[str, Any]], conditions: list[dict[str, Any]]
) -> list[tuple[str, str, str]]:
    """Events worth posting for a status change: Ready changed, Degraded raised or cleared."""
    events = []
    for cond in conditions:
        prev = before.get(cond["type"]) or {}
        text = f"{cond['type']}={cond['status']}: {cond['message']}"
        if cond["type"] == status_mod.READY and (
            prev.get("status") != cond["status"]
            or (cond["status"] == "False" and prev.get("reason") != cond["reason"])
        ):
            events.append(("Normal", cond["reason"], text))
        if cond["type"] == status_mod.DEGRADED:
            if cond["status"] == "True" and (
                prev.get("status") != "True" or prev.get("reason") != cond["reason"]
            ):
                events.append(("Warning", cond["reason"], text))
            elif cond["status"] == "False" and prev.get("status") == "True":
                events.append(("Normal", "Recovered", text))
    return events
