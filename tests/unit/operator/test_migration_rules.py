"""Pure rules around the migration Job: its phase, and when the Deployment may roll to a new image."""

from __future__ import annotations

from tests.unit.operator.conftest import make_userservice
from userservice_operator.children.migration import JobPhase, MigrationState, job_state, plan_rollout

NEW = "registry.example/userservice:1.0.0"
OLD = "registry.example/userservice:0.9.0"


def _job(*conds: tuple[str, str, str]) -> dict[str, object]:
    return {
        "metadata": {"name": "j"},
        "status": {"conditions": [{"type": t, "status": s, "message": m} for t, s, m in conds]},
    }


def test_job_state() -> None:
    assert job_state(None).phase is JobPhase.PENDING
    assert job_state(_job()).phase is JobPhase.RUNNING
    assert job_state(_job(("Complete", "True", ""))).phase is JobPhase.SUCCEEDED
    failed = job_state(_job(("Failed", "True", "BackoffLimitExceeded")))
    assert failed.phase is JobPhase.FAILED
    assert "BackoffLimitExceeded" in failed.message
    assert job_state(_job(("Failed", "False", ""))).phase is JobPhase.RUNNING


def test_rollout_waits_for_migration() -> None:
    us = make_userservice()
    running = MigrationState(JobPhase.RUNNING, "j")
    failed = MigrationState(JobPhase.FAILED, "j")
    done = MigrationState(JobPhase.SUCCEEDED, "j")
    # an existing Deployment keeps its old image until the new image's Job succeeded
    assert plan_rollout(us, running, OLD).image == OLD
    held = plan_rollout(us, failed, OLD)
    assert held.image == OLD
    assert held.held
    assert plan_rollout(us, done, OLD).image == NEW
    # the first Deployment is made at zero replicas until the first migration succeeded
    first = plan_rollout(us, running, None)
    assert (first.image, first.replicas, first.held) == (NEW, 0, True)
    # ... and stays there (at the new image, zero replicas) while the Job runs
    again = plan_rollout(us, running, NEW, 0)
    assert (again.image, again.replicas, again.held) == (NEW, 0, True)
    # a Deployment already serving this image (only settings changed) is not held
    assert not plan_rollout(us, running, NEW, 2).held
    after = plan_rollout(us, done, None)
    assert (after.image, after.replicas, after.held) == (NEW, None, False)
    # migrations disabled: straight to the new image
    assert plan_rollout(us, MigrationState(JobPhase.DISABLED), OLD).image == NEW
