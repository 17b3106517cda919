"""Status conditions per the API conventions, computed from observations (pure)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.unit.operator.conftest import make_userservice, schema
from userservice_operator import status
from userservice_operator.children import deployment
from userservice_operator.children.context import BuildContext, RolloutPlan
from userservice_operator.children.migration import JobPhase, MigrationState
from userservice_operator.events import condition_events
from userservice_operator.spec import UserService
from userservice_operator.status import Observation, Problem

IMAGE = "registry.example/userservice:1.0.0"
ROOT = Path(__file__).resolve().parents[3]


def _dep(
    ready: int, replicas: int = 2, image: str = IMAGE, spec_replicas: int = 2, **extra: Any
) -> dict[str, Any]:
    """A live Deployment: `spec_replicas` wanted (as the API server stores it), `replicas` pods of the current
    template, `ready` of them available; `extra` overrides status fields."""
    dep = deployment.build(make_userservice(), BuildContext(RolloutPlan(image, None, held=False)))
    dep["metadata"]["generation"] = 1
    dep["spec"]["replicas"] = spec_replicas
    dep["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        **extra,
    }
    return dep


def _conds(st: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


def test_ready_when_available() -> None:
    us = make_userservice()
    obs = Observation(
        generation=3,
        image=IMAGE,
        migration=MigrationState(JobPhase.SUCCEEDED, "j", "Job j completed"),
        deployment=_dep(2),
    )
    st = status.compute(us, obs)
    c = _conds(st)
    assert c[status.READY] == ("True", "Available")
    assert c[status.DEGRADED] == ("False", "AsExpected")
    assert c[status.PROGRESSING][0] == "False"
    assert c[status.MIGRATIONS_COMPLETE] == ("True", "MigrationSucceeded")
    assert st["observedGeneration"] == 3
    assert all(cond["observedGeneration"] == 3 for cond in st["conditions"])
    assert (st["replicas"], st["readyReplicas"]) == (2, 2)
    assert st["endpoints"]["grpc"] == "alpha.team-a.svc:50051"
    assert st["selector"] == (
        "app.kubernetes.io/name=userservice,app.kubernetes.io/instance=alpha,app.kubernetes.io/component=server"
    )


def _ready(us: UserService, dep: dict[str, Any], **obs: Any) -> tuple[str, str]:
    return _conds(status.compute(us, Observation(generation=1, image=IMAGE, deployment=dep, **obs)))[
        status.READY
    ]


def test_ready_waits_for_autoscaling_min_replicas() -> None:
    """A new Deployment starts at one pod until the HPA raises it: one ready pod of minReplicas 2 is not Ready."""
    us = make_userservice(autoscaling={"minReplicas": 2, "maxReplicas": 4})
    assert _ready(us, _dep(1, replicas=1, spec_replicas=1)) == ("False", "Unavailable")
    assert _ready(us, _dep(1, replicas=2, spec_replicas=2)) == ("False", "Unavailable")
    assert _ready(us, _dep(2, replicas=2, spec_replicas=2)) == ("True", "Available")
    # the HPA scaling up beyond the minimum keeps it Ready while the new pods start
    assert _ready(us, _dep(2, replicas=3, spec_replicas=3)) == ("True", "Available")


def test_ready_waits_for_spec_replicas() -> None:
    us = make_userservice(replicas=3)
    assert _ready(us, _dep(2, replicas=2, spec_replicas=2)) == ("False", "Unavailable")
    assert _ready(us, _dep(2, replicas=3, spec_replicas=3)) == ("False", "Unavailable")
    assert _ready(us, _dep(3, replicas=3, spec_replicas=3)) == ("True", "Available")
    # scaled to zero on purpose: nothing serves, so not Ready, and the message says why
    zero = Observation(generation=1, image=IMAGE, deployment=_dep(0, replicas=0, spec_replicas=0))
    ready = status.condition(status.compute(make_userservice(replicas=0), zero), status.READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "Unavailable")
    assert "spec.replicas is 0" in ready["message"]


def test_ready_waits_for_the_rollout_of_the_current_generation() -> None:
    us = make_userservice()
    # the Deployment controller has not seen the latest template yet
    assert _ready(us, _dep(2, observedGeneration=0)) == ("False", "Unavailable")
    # two new pods available, one pod of the older template still there
    assert _ready(us, _dep(2, replicas=3, updatedReplicas=2, availableReplicas=3)) == ("False", "Unavailable")
    # enough pods available, but only one of the new template
    assert _ready(us, _dep(2, updatedReplicas=1)) == ("False", "Unavailable")
    # the template still runs another image (the rollout is held or not applied yet)
    assert _ready(us, _dep(2, image="registry.example/userservice:0.9.0")) == ("False", "Unavailable")


def test_ready_waits_for_the_migration() -> None:
    """A migration that runs for pods already at the image (e.g. the database changed) is waited for too."""
    running = MigrationState(JobPhase.RUNNING, "j", "Job j is running")
    assert _ready(make_userservice(), _dep(2), migration=running) == ("False", "MigrationRunning")
    done = MigrationState(JobPhase.SUCCEEDED, "j", "Job j completed")
    assert _ready(make_userservice(), _dep(2), migration=done) == ("True", "Available")


def test_rolling_out() -> None:
    obs = Observation(generation=1, image=IMAGE, deployment=_dep(1))
    c = _conds(status.compute(make_userservice(), obs))
    assert c[status.READY] == ("False", "Unavailable")
    assert c[status.PROGRESSING] == ("True", "RollingOut")
    assert c[status.MIGRATIONS_COMPLETE] == ("True", "MigrationsDisabled")


def test_missing_secret() -> None:
    obs = Observation(
        generation=1,
        image=IMAGE,
        secret_problem=Problem("SecretNotFound", "Secret 'alpha-db' ... does not exist"),
        migration=MigrationState(JobPhase.PENDING),
    )
    c = _conds(status.compute(make_userservice(), obs))
    assert c[status.READY] == ("False", "SecretNotFound")
    assert c[status.DEGRADED] == ("True", "SecretNotFound")
    assert c[status.MIGRATIONS_COMPLETE] == ("False", "WaitingForSecret")


def test_failed_migration_holds_rollout() -> None:
    obs = Observation(
        generation=1,
        image=IMAGE,
        migration=MigrationState(JobPhase.FAILED, "j", "Job j failed: BackoffLimitExceeded"),
        deployment=_dep(2, image="registry.example/userservice:0.9.0"),
    )
    st = status.compute(make_userservice(), obs)
    c = _conds(st)
    assert c[status.MIGRATIONS_COMPLETE] == ("False", "MigrationFailed")
    assert c[status.DEGRADED] == ("True", "MigrationFailed")
    assert c[status.READY] == ("False", "MigrationFailed")
    ready = status.condition(st, status.READY)
    assert ready is not None
    assert "held" in ready["message"]
    assert "BackoffLimitExceeded" in ready["message"]
    assert st["image"] == "registry.example/userservice:0.9.0"


def test_running_migration_is_progress() -> None:
    obs = Observation(
        generation=1,
        image=IMAGE,
        migration=MigrationState(JobPhase.RUNNING, "j", "Job j is running"),
    )
    c = _conds(status.compute(make_userservice(), obs))
    assert c[status.PROGRESSING] == ("True", "MigrationRunning")
    assert c[status.READY] == ("False", "MigrationRunning")
    assert c[status.DEGRADED][0] == "False"


def test_progress_deadline_is_degraded() -> None:
    dep = _dep(
        0,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet has timed out progressing",
            }
        ],
    )
    c = _conds(status.compute(make_userservice(), Observation(generation=1, image=IMAGE, deployment=dep)))
    assert c[status.DEGRADED] == ("True", "ProgressDeadlineExceeded")


def test_monitoring_condition() -> None:
    us = make_userservice()
    absent = Observation(generation=1, image=IMAGE, monitoring_requested=True, monitoring_available=False)
    assert _conds(status.compute(us, absent))[status.MONITORING] == ("False", "CRDNotInstalled")
    present = Observation(generation=1, image=IMAGE, monitoring_requested=True, monitoring_available=True)
    assert _conds(status.compute(us, present))[status.MONITORING] == ("True", "Configured")
    off = Observation(generation=1, image=IMAGE, monitoring_requested=False)
    assert _conds(status.compute(us, off))[status.MONITORING] == ("True", "Disabled")


def test_transition_time_kept_while_status_unchanged() -> None:
    us = make_userservice()
    obs = Observation(generation=1, image=IMAGE, deployment=_dep(1))
    first = status.finalize(None, status.compute(us, obs), ts="2026-01-01T00:00:00Z")
    again = status.finalize(first, status.compute(us, obs), ts="2026-01-01T00:05:00Z")
    assert again == first
    assert not status.needs_update(first, again)
    flipped = status.finalize(
        first,
        status.compute(us, Observation(generation=1, image=IMAGE, deployment=_dep(2))),
        ts="2026-01-01T00:09:00Z",
    )
    ready = status.condition(flipped, status.READY)
    degraded = status.condition(flipped, status.DEGRADED)
    assert ready is not None
    assert ready["lastTransitionTime"] == "2026-01-01T00:09:00Z"
    assert degraded is not None
    assert degraded["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert status.needs_update(first, flipped)
    for cond in flipped["conditions"]:
        assert set(cond) == {
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        }


def test_condition_events() -> None:
    ready_false = {"type": "Ready", "status": "False", "reason": "MigrationRunning", "message": "m"}
    degraded_true = {"type": "Degraded", "status": "True", "reason": "SecretNotFound", "message": "s"}
    degraded_false = {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "ok"}
    # first status: Ready is news, a healthy Degraded is not
    assert condition_events({}, [ready_false, degraded_false]) == [
        ("Normal", "MigrationRunning", "Ready=False: m")
    ]
    # unchanged: nothing
    before = {"Ready": ready_false, "Degraded": degraded_false}
    assert condition_events(before, [ready_false, degraded_false]) == []
    # a problem is a Warning; its end is "Recovered"
    assert condition_events(before, [ready_false, degraded_true])[-1][:2] == ("Warning", "SecretNotFound")
    assert condition_events({"Degraded": degraded_true}, [degraded_false]) == [
        ("Normal", "Recovered", "Degraded=False: ok")
    ]


def _hpa(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": f"{r} says"} for t, s, r in conditions
            ]
        }
    }


def test_autoscaling_metric_condition_follows_the_hpa() -> None:
    """A metric the HPA cannot read stops every scale-down: the UserService says so with the HPA's reason."""
    scaled = make_userservice(autoscaling={"maxReplicas": 5, "targetRequestsPerSecond": 10})
    cond = status.autoscaling_metric(
        scaled,
        _hpa(("AbleToScale", "True", "SucceededGetScale"), ("ScalingActive", "False", "FailedGetPodsMetric")),
    )
    assert (cond["status"], cond["reason"]) == ("False", "FailedGetPodsMetric")
    assert "ScalingActive=False: FailedGetPodsMetric says" in cond["message"]
    cond = status.autoscaling_metric(scaled, _hpa(("AbleToScale", "False", "FailedGetScale")))
    assert (cond["status"], cond["reason"]) == ("False", "FailedGetScale")
    ok = status.autoscaling_metric(
        scaled,
        _hpa(("AbleToScale", "True", "ReadyForNewScale"), ("ScalingActive", "True", "ValidMetricFound")),
    )
    assert (ok["status"], ok["reason"]) == ("True", "ValidMetricFound")
    assert status.autoscaling_metric(scaled, None)["status"] == "Unknown"
    off = status.autoscaling_metric(make_userservice(), None)
    assert (off["status"], off["reason"]) == ("True", "NotAutoscaled")


def test_slo_status_shows_budgets_only_when_read() -> None:
    us = make_userservice(
        slo={"availability": {"objective": 99.9}, "latency": {"objective": 99, "thresholdSeconds": 0.5}}
    )
    obs = Observation(generation=1, image=IMAGE)
    assert status.compute(us, obs)["slo"] == {
        "availability": {"objective": 99.9},
        "latency": {"objective": 99},
    }
    read = Observation(generation=1, image=IMAGE, slo_budgets={"availability": 0.25})
    assert status.compute(us, read)["slo"]["availability"] == {
        "objective": 99.9,
        "errorBudgetRemaining": 0.25,
    }
    assert "slo" not in status.compute(make_userservice(), obs)


def test_every_condition_the_operator_sets_is_documented() -> None:
    """README.md's list, docs/operator.md's table and the CRD's description name exactly the conditions set."""
    written = [c["type"] for c in status.compute(make_userservice(), Observation(1, IMAGE))["conditions"]]
    assert written == list(status.CONDITION_TYPES)
    readme = " ".join((ROOT / "README.md").read_text().split())
    listed = re.search(r"Status conditions: ([A-Za-z, ]+)\.", readme)
    assert listed is not None and listed.group(1).split(", ") == written
    page = (ROOT / "docs/operator.md").read_text()
    table = page.split("### Conditions", 1)[1].split("\n\n")[1]
    assert [row.split("|")[1].strip() for row in table.splitlines()[2:]] == written
    described = schema()["properties"]["status"]["properties"]["conditions"]["description"]
    assert all(ctype in described for ctype in written)
