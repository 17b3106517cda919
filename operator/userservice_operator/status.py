"""Status of a UserService per the Kubernetes API conventions (pure functions, no I/O).

Conditions: Ready, Progressing, Degraded, MigrationsComplete, Monitoring and AutoscalingMetricAvailable, each
with status, reason, message, lastTransitionTime (kept while the status does not change) and
observedGeneration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from userservice_operator.children.common import selector_labels
from userservice_operator.children.migration import JobPhase, MigrationState
from userservice_operator.children.service import endpoints
from userservice_operator.spec import Manifest, UserService

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
MIGRATIONS_COMPLETE = "MigrationsComplete"
MONITORING = "Monitoring"
AUTOSCALING_METRIC = "AutoscalingMetricAvailable"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, MIGRATIONS_COMPLETE, MONITORING, AUTOSCALING_METRIC)


@dataclass(frozen=True)
class Problem:
    """A reason (CamelCase) and a human message."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    """Everything the status is computed from, gathered by one reconcile pass."""

    generation: int
    image: str
    secret_problem: Problem | None = None
    apply_problem: Problem | None = None
    migration: MigrationState = field(default_factory=lambda: MigrationState(JobPhase.DISABLED))
    deployment: Manifest | None = None
    monitoring_requested: bool = False
    monitoring_available: bool = True
    completed_migration: dict[str, str] = field(default_factory=dict)
    hpa: Manifest | None = None
    slo_budgets: dict[str, float] = field(
        default_factory=dict
    )  # SLI -> error budget remaining, from Prometheus


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cond(ctype: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": ctype, "status": "True" if ok else "False", "reason": reason, "message": message}


def minimum_replicas(us: UserService) -> int:
    """The pods a user waits for: autoscaling.minReplicas when autoscaled, else spec.replicas."""
    autoscaling = us.spec.autoscaling
    return autoscaling.min_replicas if autoscaling is not None and autoscaling.enabled else us.spec.replicas


@dataclass(frozen=True)
class Rollout:
    """What a live Deployment says about the wanted image and replicas."""

    available: bool  # at least `minimum` pods of the wanted template available, no older pod left
    rolling: bool  # the Deployment has not finished rolling out or scaling to its own replica count
    summary: str
    problem: Problem | None = None


def deployment_progress(deployment: Manifest | None, image: str, minimum: int) -> Rollout:
    """The rollout of a live Deployment for the wanted image and the minimum of available pods.

    Available means: the Deployment's controller has seen its current generation, its template runs `image`,
    no pod of an older template is left, and at least `minimum` (and at least one) pods are updated and
    available. Scaling up beyond the minimum (the HPA) keeps it available; a Deployment still at fewer pods
    (e.g. just created at one pod, before the HPA raises it to minReplicas) is not.
    """
    if deployment is None:
        return Rollout(False, False, "Deployment not created yet")
    spec = deployment.get("spec") or {}
    st = deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    updated = int(st.get("updatedReplicas", 0))
    available = int(st.get("availableReplicas", 0))
    total = int(st.get("replicas", 0))
    current_gen = int(st.get("observedGeneration", 0)) >= int(deployment["metadata"].get("generation", 0))
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    at_image = containers[0].get("image") == image
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Rollout(
                False, False, "", Problem("ProgressDeadlineExceeded", str(cond.get("message", "")))
            )
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return Rollout(False, False, "", Problem("ReplicaFailure", str(cond.get("message", ""))))
    needed = max(minimum, 1)
    summary = (
        f"{available}/{max(wanted, needed)} replicas available, {updated} updated (Ready needs {needed})"
    )
    if minimum == 0:
        summary += ": spec.replicas is 0, no pod serves"
    done = current_gen and updated >= wanted and total <= wanted and available >= wanted
    is_available = current_gen and at_image and total <= updated and updated >= needed and available >= needed
    return Rollout(is_available, not done or not at_image, summary)


def autoscaling_metric(us: UserService, hpa: Manifest | None) -> dict[str, Any]:
    """Whether the HPA can read its metrics, from its own conditions. With a metric it cannot get (e.g. the
    request rate, without a metrics adapter) the HPA still scales up on the others but never down: say so."""
    if not us.spec.autoscaled():
        return _cond(AUTOSCALING_METRIC, True, "NotAutoscaled", "spec.autoscaling is off")
    conditions = {c.get("type"): c for c in ((hpa or {}).get("status") or {}).get("conditions") or []}
    for ctype in ("AbleToScale", "ScalingActive"):
        cond = conditions.get(ctype)
        if cond is not None and cond.get("status") == "False":
            message = f"HorizontalPodAutoscaler {ctype}=False: {cond.get('message', '')}"
            return _cond(AUTOSCALING_METRIC, False, str(cond.get("reason") or ctype), message)
    active = conditions.get("ScalingActive")
    if active is None:
        cond = _cond(
            AUTOSCALING_METRIC, False, "Pending", "the HorizontalPodAutoscaler has not read its metrics yet"
        )
        return {**cond, "status": "Unknown"}
    return _cond(
        AUTOSCALING_METRIC,
        True,
        str(active.get("reason") or "ValidMetricFound"),
        str(active.get("message", "")),
    )


def slo_status(us: UserService, budgets: dict[str, float]) -> dict[str, Any]:
    """Each objective of spec.slo, with its error budget remaining where Prometheus gave one."""
    objectives = {"availability": us.spec.slo.availability, "latency": us.spec.slo.latency}
    result: dict[str, Any] = {}
    for sli, objective in objectives.items():
        if objective is None:
            continue
        result[sli] = {"objective": objective.objective}
        if sli in budgets:
            result[sli]["errorBudgetRemaining"] = round(budgets[sli], 4)
    return result


def compute(us: UserService, obs: Observation) -> dict[str, Any]:
    """The desired status (without lastTransitionTime, see `merge_conditions`)."""
    mig = obs.migration
    # MigrationsComplete
    if obs.secret_problem and mig.phase in (JobPhase.PENDING, JobPhase.RUNNING):
        migrations = _cond(MIGRATIONS_COMPLETE, False, "WaitingForSecret", obs.secret_problem.message)
    elif mig.phase is JobPhase.DISABLED:
        migrations = _cond(
            MIGRATIONS_COMPLETE, True, "MigrationsDisabled", "spec.migrations.enabled is false"
        )
    elif mig.phase is JobPhase.SUCCEEDED:
        migrations = _cond(MIGRATIONS_COMPLETE, True, "MigrationSucceeded", f"{mig.message} for {obs.image}")
    elif mig.phase is JobPhase.FAILED:
        migrations = _cond(
            MIGRATIONS_COMPLETE, False, "MigrationFailed", f"{mig.message}; rollout to {obs.image} is held"
        )
    elif mig.phase is JobPhase.RUNNING:
        migrations = _cond(MIGRATIONS_COMPLETE, False, "MigrationRunning", f"{mig.message} for {obs.image}")
    else:
        migrations = _cond(MIGRATIONS_COMPLETE, False, "MigrationPending", "migration Job not created yet")

    rollout = deployment_progress(obs.deployment, obs.image, minimum_replicas(us))

    problem = obs.secret_problem or obs.apply_problem or rollout.problem
    if problem is None and mig.phase is JobPhase.FAILED:
        problem = Problem("MigrationFailed", migrations["message"])
    degraded = (
        _cond(DEGRADED, True, problem.reason, problem.message)
        if problem
        else _cond(DEGRADED, False, "AsExpected", "no problem observed")
    )

    if mig.phase is JobPhase.RUNNING and not obs.secret_problem:
        progressing = _cond(PROGRESSING, True, "MigrationRunning", migrations["message"])
    elif problem is None and rollout.rolling:
        progressing = _cond(PROGRESSING, True, "RollingOut", f"rolling out {obs.image}: {rollout.summary}")
    else:
        progressing = _cond(PROGRESSING, False, "Idle" if problem is None else "Stalled", rollout.summary)

    # Ready is what `kubectl wait --for=condition=Ready` waits for: no problem, the migration done, and the
    # minimum of pods available at the wanted image (see deployment_progress).
    if problem is not None:
        ready = _cond(READY, False, problem.reason, problem.message)
    elif migrations["status"] != "True":
        ready = _cond(READY, False, migrations["reason"], migrations["message"])
    elif rollout.available:
        ready = _cond(READY, True, "Available", rollout.summary)
    else:
        ready = _cond(READY, False, "Unavailable" if obs.deployment else "NotCreated", rollout.summary)

    if not obs.monitoring_requested:
        monitoring = _cond(
            MONITORING,
            True,
            "Disabled",
            "spec.monitoring.serviceMonitor is disabled (so is the PrometheusRule, whose alerts read it)",
        )
    elif obs.monitoring_available:
        monitoring = _cond(MONITORING, True, "Configured", "ServiceMonitor/PrometheusRule applied")
    else:
        monitoring = _cond(
            MONITORING,
            False,
            "CRDNotInstalled",
            "monitoring.coreos.com CRDs (Prometheus Operator) are not installed; ServiceMonitor and "
            "PrometheusRule will be created once they are",
        )

    dep_status = (obs.deployment or {}).get("status") or {}
    containers = (((obs.deployment or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or [{}]
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "conditions": [
            {**c, "observedGeneration": obs.generation}
            for c in (ready, progressing, degraded, migrations, monitoring, autoscaling_metric(us, obs.hpa))
        ],
        "replicas": int(dep_status.get("replicas", 0)),
        "readyReplicas": int(dep_status.get("readyReplicas", 0)),
        "selector": ",".join(f"{k}={v}" for k, v in selector_labels(us).items()),
        "endpoints": endpoints(us),
    }
    slo = slo_status(us, obs.slo_budgets)
    if slo:
        status["slo"] = slo
    if obs.deployment is not None and containers[0].get("image"):
        status["image"] = containers[0]["image"]
    migration: dict[str, str] = dict(obs.completed_migration)
    if mig.job:
        migration["job"] = mig.job
        migration["image"] = obs.image
    if migration:
        status["migration"] = migration
    return status


def merge_conditions(
    old: list[dict[str, Any]] | None, new: list[dict[str, Any]], ts: str
) -> list[dict[str, Any]]:
    """New conditions with lastTransitionTime carried over from `old` when the status did not change."""
    previous = {c.get("type"): c for c in old or []}
    merged = []
    for cond in new:
        before = previous.get(cond["type"])
        keep = (
            before is not None and before.get("status") == cond["status"] and before.get("lastTransitionTime")
        )
        merged.append({**cond, "lastTransitionTime": before["lastTransitionTime"] if keep and before else ts})
    return merged


def finalize(
    old_status: dict[str, Any] | None, new_status: dict[str, Any], ts: str | None = None
) -> dict[str, Any]:
    """The full status to write: conditions merged with the old ones' transition times."""
    old_status = old_status or {}
    return {
        **new_status,
        "conditions": merge_conditions(old_status.get("conditions"), new_status["conditions"], ts or now()),
    }


def needs_update(old_status: dict[str, Any] | None, new_status: dict[str, Any]) -> bool:
    """Whether writing `new_status` (as made by `finalize`) would change anything."""
    old_status = old_status or {}
    return any(old_status.get(k) != v for k, v in new_status.items())


def condition(status: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


RECONCILE_ERROR = "ReconcileError"


def degraded_on_failure(
    old_status: dict[str, Any] | None, detail: str, generation: int, ts: str | None = None
) -> list[dict[str, Any]] | None:
    """The conditions showing a failed pass as Degraded=True, reason ReconcileError, the others untouched.

    None when the status already says exactly that (nothing to write).
    """
    conditions = [dict(c) for c in (old_status or {}).get("conditions") or []]
    previous = next((c for c in conditions if c.get("type") == DEGRADED), None)
    if previous and previous.get("reason") == RECONCILE_ERROR and previous.get("message") == detail:
        return None
    degraded = {
        "type": DEGRADED,
        "status": "True",
        "reason": RECONCILE_ERROR,
        "message": detail,
        "observedGeneration": generation,
    }
    (degraded,) = merge_conditions(conditions, [degraded], ts or now())
    if previous is None:
        conditions.append(degraded)
    else:
        conditions[conditions.index(previous)] = degraded
    return conditions
