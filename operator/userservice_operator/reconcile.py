"""One reconcile pass of one UserService: apply(children(spec)) phase by phase in the table's order (the children
of one phase at once), then the status.

The pass receives its context as a value and returns what it observed (`Outcome`); it never writes into the
runtime (runtime.py), which decides what to keep and when to run the next pass.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from userservice_operator import budget, prometheus
from userservice_operator import status as status_mod
from userservice_operator.apply import apply
from userservice_operator.children import CHILDREN, OPTIONAL_CRDS, Child, Phase, migration
from userservice_operator.children.common import MANAGED_BY, MIGRATION_HASH_LABEL, OWNER_NAMESPACE_LABEL
from userservice_operator.children.context import BuildContext, RolloutPlan
from userservice_operator.children.env import database_secret
from userservice_operator.children.migration import JobPhase, MigrationState
from userservice_operator.crd import KIND, SUBSCRIPTION_KIND
from userservice_operator.events import Recorder, condition_events
from userservice_operator.kube import Kube
from userservice_operator.spec import Manifest, UserService
from userservice_operator.status import Observation, Problem

log = logging.getLogger(__name__)
CHILD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"


@dataclass(frozen=True)
class Context:
    kube: Kube
    recorder: Recorder
    optional_apis: bool | None  # the CRDs of the optional kinds are Established; None: not checked yet
    runbooks: str  # where docs/runbooks.md is published: ControllerConfig.runbooks
    prometheus_url: str = ""  # where the error budgets of spec.slo are read; empty: not read


@dataclass(frozen=True)
class Outcome:
    """What a pass saw and wrote."""

    optional_apis: bool
    status: dict[str, Any] | None = None  # the status as written (None: unchanged)
    resource_version: str | None = None
    retry: str = ""  # non-empty: waiting for something outside the operator (the Secret); retry with backoff
    # (kind, name) -> resourceVersion of each object the pass wrote or read (children, and the UserService
    # when the pass wrote its status): their watch events then need no pass
    versions: dict[tuple[str, str], str] = field(default_factory=dict)


async def optional_apis_present(kube: Kube) -> bool:
    """Whether every CRD of the optional kinds (the Prometheus Operator's) is Established."""
    for crd in OPTIONAL_CRDS:
        obj = await kube.get("CustomResourceDefinition", None, crd)
        if not any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in ((obj or {}).get("status") or {}).get("conditions") or []
        ):
            return False
    return True


def _owned(us: UserService, obj: Manifest | None) -> bool:
    if obj is None:
        return False
    refs = obj["metadata"].get("ownerReferences") or []
    if refs:
        return any(ref.get("uid") == us.uid for ref in refs)
    return child_owner(obj) == (us.namespace, us.name)  # cluster-scoped: named by its labels


@dataclass(frozen=True)
class _Pass:
    """The inputs every step of one pass shares."""

    ctx: Context
    body: Manifest
    us: UserService
    news: list[tuple[str, str, str]] = field(default_factory=list)  # Events to post when the pass ends
    live: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> resourceVersion seen

    def event(self, event_type: str, reason: str, message: str) -> None:
        """Note an Event; the pass posts its Events together at its end, off the path to the children."""
        self.news.append((event_type, reason, message))

    async def post_events(self) -> None:
        recorder = self.ctx.recorder
        await asyncio.gather(*(recorder.event(self.body, *news) for news in self.news))
        self.news.clear()

    def saw(self, obj: Manifest | None) -> Manifest | None:
        """Remember the resourceVersion of a child as this pass left it (its watch event then needs no pass)."""
        if obj is not None and obj.get("metadata", {}).get("resourceVersion"):
            self.live[(obj["kind"], obj["metadata"]["name"])] = obj["metadata"]["resourceVersion"]
        return obj

    async def ensure(self, child: Child, desired: Manifest | None) -> Manifest | None:
        """Apply `desired`, or delete our object of that kind when `desired` is None."""
        kube, us, kind = self.ctx.kube, self.us, child.kind
        name = desired["metadata"]["name"] if desired is not None else us.name
        if desired is None:
            live = await kube.get(kind, us.namespace, name)
            if _owned(us, live) and await kube.delete(kind, us.namespace, name):
                self.event("Normal", "Deleted", f"deleted {kind} {name} (no longer wanted by spec)")
            return None
        try:
            # A UserService without a status has never been through a pass: its children cannot be up to date,
            # so no GET first (one round trip less on the way to its children; the apply tells created apart).
            result = await apply(kube, desired, fetched=not self.body.get("status"))
        except ApiException as exc:
            # 422: the live object cannot be brought back by apply (an immutable field changed, or list
            # entries someone else took over collide with ours). Ours to manage: replace it.
            live = await kube.get(kind, us.namespace, name)
            if exc.status != 422 or not _owned(us, live):
                raise
            log.warning(
                "%s %s/%s cannot be patched (%s); re-creating it", kind, us.namespace, name, exc.reason
            )
            await kube.delete(kind, us.namespace, name)
            self.event("Warning", "Recreated", f"re-created {kind} {name}: {str(exc.body)[:300]}")
            result = await apply(kube, desired, None, fetched=True)
        if result.action == "created":
            self.event("Normal", "Created", f"created {kind} {name}")
        elif result.action == "configured":
            self.event("Normal", "Applied", f"applied {kind} {name} (spec change or drift)")
        return self.saw(result.live)

    async def ensure_support(self, child: Child, secrets: tuple[str, ...]) -> ApiException | None:
        """Apply a support child; the 404 of an optional kind whose CRD went away is returned, not raised."""
        try:
            await self.ensure(child, child.build(self.us, BuildContext(None, self.ctx.runbooks, secrets)))
        except ApiException as exc:
            if exc.status != 404 or not child.optional_api:
                raise
            return exc
        return None

    async def migrate(self, child: Child) -> MigrationState:
        """Make sure the migration Job for the current image exists; report its phase."""
        kube, us = self.ctx.kube, self.us
        job = child.build(us, None)
        assert job is not None
        name = job["metadata"]["name"]
        done = ((self.body.get("status") or {}).get("migration") or {}).get("completedHash")
        live = await kube.get(child.kind, us.namespace, name)
        if live is None and done == migration.migration_hash(us):
            return MigrationState(JobPhase.SUCCEEDED, name, f"Job {name} completed")
        if live is None:
            live = self.saw((await apply(kube, job, None, fetched=True)).live)
            self.event(
                "Normal",
                "MigrationStarted",
                f"started Job {name} to migrate the schema for {us.spec.image}",
            )
        state = migration.job_state(live)
        if state.phase is JobPhase.SUCCEEDED:
            await self.prune_jobs(child, keep=name)
        return state

    async def prune_jobs(self, child: Child, keep: str) -> None:
        us = self.us
        selector = f"app.kubernetes.io/instance={us.name},app.kubernetes.io/component={migration.COMPONENT}"
        for job in await self.ctx.kube.list(child.kind, us.namespace, selector):
            jname = job["metadata"]["name"]
            if (
                jname != keep
                and _owned(us, job)
                and MIGRATION_HASH_LABEL in (job["metadata"].get("labels") or {})
            ):
                await self.ctx.kube.delete(child.kind, us.namespace, jname)

    async def signing_secrets(self) -> tuple[str, ...]:
        """The Secrets named by the signingSecretRef of this UserService's UserEventSubscriptions: its pods may
        read exactly these (children/subscriptionaccess.py). None while that CRD is not installed."""
        try:
            # From the API server's watch cache: a subscription's change reaches the operator through that cache's
            # watch and starts this pass, so the cache already holds it; a fresh list would wait for the cache.
            listed = await self.ctx.kube.list(SUBSCRIPTION_KIND, self.us.namespace, cached=True)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return ()
        return signing_secrets(listed, self.us.name)

    async def check_secret(self) -> Problem | None:
        """What keeps the pods from starting: the database Secret or its key missing, or a connection budget
        too small for the pods (see budget.py)."""
        if too_small := budget.problem(self.us.spec):
            return Problem("ConnectionBudgetTooSmall", too_small)
        name, key = database_secret(self.us)
        cnpg = self.us.spec.database.cloud_native_pg
        field = "spec.database.cloudNativePG" if cnpg is not None else "spec.database.secretRef"
        secret = await self.ctx.kube.get("Secret", self.us.namespace, name)
        if secret is None:
            return Problem("SecretNotFound", f"Secret {name!r} ({field}) does not exist")
        if key not in (secret.get("data") or {}) and key not in (secret.get("stringData") or {}):
            return Problem("SecretKeyNotFound", f"Secret {name!r} has no key {key!r} ({field})")
        return None

    async def write_status(self, obs: Observation) -> tuple[dict[str, Any] | None, str | None]:
        """Write the status when it changed; the status and resourceVersion written (None: nothing)."""
        old_status = self.body.get("status") or {}
        new_status = status_mod.finalize(old_status, status_mod.compute(self.us, obs))
        if not status_mod.needs_update(old_status, new_status):
            return None, None
        before = {c["type"]: c for c in old_status.get("conditions") or []}
        for event_type, reason, message in condition_events(before, new_status["conditions"]):
            self.event(event_type, reason, message)
        try:
            updated = await self.ctx.kube.patch_status(KIND, self.us.namespace, self.us.name, new_status)
        except ApiException as exc:
            if exc.status == 404:
                return None, None
            raise
        return updated.get("status", new_status), updated["metadata"].get("resourceVersion")


async def slo_budgets(ctx: Context, us: UserService) -> dict[str, float]:
    if not ctx.prometheus_url:
        return {}
    return await prometheus.error_budgets(ctx.prometheus_url, us)


@dataclass(frozen=True)
class _Workload:
    """What applying the workload children left: the live Deployment and HPA, or why the apply failed."""

    deployment: Manifest | None = None
    hpa: Manifest | None = None
    problem: Problem | None = None


async def _apply_workload(step: _Pass, workload: list[Child], plan: RolloutPlan) -> _Workload:
    """The workload children (the Deployment and its HPA only refer to each other by name: at once)."""
    try:
        lives = await asyncio.gather(
            *(step.ensure(c, c.build(step.us, BuildContext(plan, step.ctx.runbooks))) for c in workload)
        )
    except ApiException as exc:
        if exc.status not in (409, 422):
            raise
        return _Workload(problem=Problem("ApplyFailed", f"{exc.status} {exc.reason}: {str(exc.body)[:500]}"))
    by_kind = dict(zip((c.kind for c in workload), lives, strict=True))
    return _Workload(by_kind.get("Deployment"), by_kind.get("HorizontalPodAutoscaler"))


async def reconcile(ctx: Context, body: Manifest) -> Outcome:
    """One pass: apply every wanted child (phase by phase, each phase's children at once), delete unwanted
    ones, write the status."""
    step = _Pass(ctx, body, UserService.from_manifest(body))
    try:
        return await _reconcile(step)
    finally:
        await step.post_events()


async def _reconcile(step: _Pass) -> Outcome:
    ctx, body, us = step.ctx, step.body, step.us
    old_status = body.get("status") or {}
    optional_apis = ctx.optional_apis
    if optional_apis is None:
        optional_apis = await optional_apis_present(ctx.kube)

    # The support children are independent of one another: applied at once, beside the two reads the later
    # phases need (one round trip of latency instead of one per child). With migrations off the rollout plan
    # needs nothing but the Secret, so the workload children go out as soon as it is found, beside the support
    # children's applies rather than after them: a new UserService's children in one round trip after the read.
    support = [c for c in CHILDREN if c.phase is Phase.SUPPORT and (optional_apis or not c.optional_api)]
    workload = [c for c in CHILDREN if c.phase is Phase.WORKLOAD]
    plan_now = not us.spec.migrations.enabled

    async def secret_then_workload() -> tuple[Problem | None, _Workload | None]:
        problem = await step.check_secret()
        if problem is not None or not plan_now:
            return problem, None
        return None, await _apply_workload(
            step, workload, migration.plan_rollout(us, MigrationState(JobPhase.DISABLED), None)
        )

    async def subscription_access() -> None:
        # The pods' Role names the subscriptions' signing Secrets, and its RoleBinding follows the Role (the API
        # server checks a binding against the role it names). A path of their own: the API server's checks of
        # what the operator may grant read its caches, which under writes take up to 100 ms to be current.
        secrets = await step.signing_secrets()
        for phase in (Phase.SUBSCRIPTIONS, Phase.BINDING):
            await asyncio.gather(*(step.ensure_support(c, secrets) for c in CHILDREN if c.phase is phase))

    ((secret_problem, applied), live_dep), gone, _ = await asyncio.gather(
        asyncio.gather(secret_then_workload(), ctx.kube.get("Deployment", us.namespace, us.name)),
        asyncio.gather(*(step.ensure_support(child, ()) for child in support)),
        subscription_access(),
    )
    if any(gone):
        optional_apis = await optional_apis_present(ctx.kube)  # the CRDs went away
        if optional_apis:
            raise next(exc for exc in gone if exc is not None)

    apply_problem: Problem | None = None
    mig = MigrationState(JobPhase.DISABLED)
    completed = dict(old_status.get("migration") or {})
    completed.pop("job", None)
    completed.pop("image", None)
    live_hpa: Manifest | None = None
    if secret_problem is None:
        if applied is None:
            if us.spec.migrations.enabled:
                (job_child,) = (c for c in CHILDREN if c.phase is Phase.MIGRATION)
                mig = await step.migrate(job_child)
                if mig.phase is JobPhase.SUCCEEDED:
                    completed = {
                        "completedHash": migration.migration_hash(us),
                        "completedImage": us.spec.image,
                    }
                elif mig.phase is JobPhase.FAILED and old_status.get("migration", {}).get("job") != mig.job:
                    step.event("Warning", "MigrationFailed", f"{mig.message}; rollout held")
            live_image, live_replicas = None, None
            if live_dep is not None:
                live_image = live_dep["spec"]["template"]["spec"]["containers"][0].get("image")
                live_replicas = live_dep["spec"].get("replicas")
            applied = await _apply_workload(
                step, workload, migration.plan_rollout(us, mig, live_image, live_replicas)
            )
        live_dep = applied.deployment or live_dep
        live_hpa = applied.hpa
        apply_problem = applied.problem
    elif us.spec.migrations.enabled:
        mig = MigrationState(JobPhase.PENDING)

    # The PrometheusRule is made only with the ServiceMonitor (its alerts read that scrape).
    monitoring_requested = us.spec.monitoring.service_monitor.enabled
    obs = Observation(
        generation=us.generation,
        image=us.spec.image,
        secret_problem=secret_problem,
        apply_problem=apply_problem,
        migration=mig,
        deployment=live_dep,
        monitoring_requested=monitoring_requested,
        monitoring_available=optional_apis,
        completed_migration=completed,
        hpa=live_hpa,
        slo_budgets=await slo_budgets(ctx, us),
    )
    written, resource_version = await step.write_status(obs)
    return Outcome(
        optional_apis=optional_apis,
        status=written,
        resource_version=resource_version,
        retry=secret_problem.message if secret_problem else "",
        versions={**step.live, **({(KIND, us.name): resource_version} if resource_version else {})},
    )


def signing_secrets(subscriptions: list[Manifest], user_service: str) -> tuple[str, ...]:
    """The signing Secrets of the subscriptions naming `user_service`, sorted, each once."""
    return tuple(
        sorted(
            {
                str(ref["name"])
                for sub in subscriptions
                if (spec := sub.get("spec") or {}).get("userService") == user_service
                and isinstance(ref := spec.get("signingSecretRef"), dict)
                and ref.get("name")
            }
        )
    )


def subscription_owner(body: Manifest) -> tuple[str, str] | None:
    """(namespace, name) of the UserService a UserEventSubscription names."""
    name = (body.get("spec") or {}).get("userService")
    namespace = (body.get("metadata") or {}).get("namespace")
    return (str(namespace), str(name)) if name and namespace else None


def child_owner(body: Manifest) -> tuple[str, str] | None:
    """(namespace, name) of the UserService owning a child: from its ownerReferences or, for a cluster-scoped
    child, from its labels."""
    meta = body.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith("userservice.io/"):
            return str(meta.get("namespace")), str(ref.get("name"))
    found = meta.get("labels") or {}
    if found.get("app.kubernetes.io/managed-by") == MANAGED_BY and OWNER_NAMESPACE_LABEL in found:
        return str(found[OWNER_NAMESPACE_LABEL]), str(found.get("app.kubernetes.io/instance", ""))
    return None
