"""The connection budget and the database environment: pure functions of the typed spec."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.unit.operator.conftest import make_userservice, schema
from userservice_operator import budget
from userservice_operator.children import deployment, migration
from userservice_operator.children.env import conditional_env_rule


def env_of(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_pool_fits_the_budget_at_the_peak_of_autoscaling_and_a_rollout_with_old_pods_draining() -> None:
    spec = make_userservice(
        autoscaling={"minReplicas": 2, "maxReplicas": 10},
        database={"secretRef": {"name": "db"}, "maxConnections": 100},
    ).spec
    size = budget.pool_size(spec)
    assert size is not None
    peak = 2 * 10
    assert peak * (size + budget.POD_OWN_CONNECTIONS) + budget.MIGRATION_JOB_CONNECTIONS <= 100
    assert (
        peak * (size + 1 + budget.POD_OWN_CONNECTIONS) + budget.MIGRATION_JOB_CONNECTIONS
    ) > 100  # the largest
    assert size == 3


def test_without_autoscaling_the_replica_count_sets_the_peak() -> None:
    spec = make_userservice(replicas=4, database={"secretRef": {"name": "db"}, "maxConnections": 51}).spec
    assert budget.peak_pods(spec) == 8
    assert budget.pool_size(spec) == 5


def test_no_budget_leaves_the_service_defaults() -> None:
    spec = make_userservice().spec
    assert budget.pool_size(spec) is None and budget.problem(spec) is None
    assert "DB_POOL_MAX" not in env_of(deployment.build(make_userservice()))


def test_a_budget_too_small_for_a_working_pool_is_a_problem_naming_what_it_needs() -> None:
    spec = make_userservice(
        autoscaling={"maxReplicas": 10}, database={"secretRef": {"name": "db"}, "maxConnections": 30}
    ).spec
    with pytest.raises(budget.BudgetTooSmall):
        budget.pool_size(spec)
    assert "at least 61" in (budget.problem(spec) or "")  # 20 pods x (2 + 1) + 1


def _cel_minimum(spec: Any) -> int:
    """What the CRD's rule demands, evaluated the way CEL would (integer division)."""
    pods = spec.autoscaling.max_replicas if spec.autoscaled() else spec.replicas
    return 2 * pods * 3 + 1


@pytest.mark.parametrize("pods", [1, 2, 3, 5, 7, 10, 33])
def test_the_crd_rule_refuses_exactly_what_the_operator_cannot_size(pods: int) -> None:
    base = make_userservice(autoscaling={"maxReplicas": pods}).spec
    for max_connections in range(4, 200):
        spec = replace(base, database=replace(base.database, max_connections=max_connections))
        assert (budget.problem(spec) is None) == (max_connections >= _cel_minimum(spec))


def test_zero_replicas_have_no_pool_to_size() -> None:
    """A budget with spec.replicas 0 (scaled down on purpose) is no problem and sets no pool size."""
    us = make_userservice(replicas=0, database={"secretRef": {"name": "db"}, "maxConnections": 10})
    assert budget.problem(us.spec) is None
    assert budget.pool_size(us.spec) is None
    assert "DB_POOL_MAX" not in env_of(deployment.build(us))


def test_the_crd_carries_the_rules_of_this_code() -> None:
    rules = [r["rule"] for r in schema()["properties"]["spec"]["x-kubernetes-validations"]]
    assert budget.feasibility_rule() in rules
    assert conditional_env_rule() in rules


def test_the_pods_get_the_pool_sizes_and_the_migration_job_does_not() -> None:
    us = make_userservice(
        autoscaling={"maxReplicas": 10}, database={"secretRef": {"name": "db"}, "maxConnections": 100}
    )
    env = env_of(deployment.build(us))
    assert env["DB_POOL_MAX"] == env["DB_READ_POOL_MAX"] == "3"
    job = migration.build(us)
    assert job is not None
    assert "DB_POOL_MAX" not in env_of(job)


def test_cloudnativepg_uses_the_app_secret_by_reference_and_the_ro_service_for_reads() -> None:
    us = make_userservice(database={"cloudNativePG": {"clusterName": "pg"}})
    env = env_of(deployment.build(us))
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "pg-app", "key": "uri"}}
    assert env["PGUSER"] == {"secretKeyRef": {"name": "pg-app", "key": "username"}}
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "pg-app", "key": "password"}}
    assert env["PGDATABASE"] == {"secretKeyRef": {"name": "pg-app", "key": "dbname"}}
    assert env["DATABASE_READ_URL"] == "postgresql://pg-ro.team-a:5432"
    job = migration.build(us)
    assert job is not None
    job_env = env_of(job)
    assert job_env["DATABASE_URL"] == {"secretKeyRef": {"name": "pg-app", "key": "uri"}}
    assert "DATABASE_READ_URL" not in job_env
