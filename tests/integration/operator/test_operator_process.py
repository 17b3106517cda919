"""The operator program: leader election between replicas, kill/restart, an API server restart underneath.

Each test starts its own `userservice-operator` processes for a `solo-*` namespace (the shared operator
does not watch those), with a Lease of its own.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.operator.conftest import Operator, install_operator_api, wait_for
from tests.integration.operator.helpers import apply, get, reconciled, secret, userservice
from tests.support.kube import KubeCluster, running_cluster

pytestmark = pytest.mark.needs_kube


def _lease_holder(cluster: KubeCluster, lease: str) -> str:
    out = cluster.kubectl("-n", "userservice-system", "get", "lease", lease, "-o", "json", check=False)
    if out.returncode != 0:
        return ""
    return str(json.loads(out.stdout)["spec"].get("holderIdentity") or "")


def test_two_replicas_one_acts_and_failover(
    operator_cluster: KubeCluster, solo_namespace: str, start_operator: Callable[..., Operator]
) -> None:
    ns = solo_namespace
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    a = start_operator(f"--namespace={ns}", f"--lease-name={lease}", name=f"a-{lease}")
    b = start_operator(f"--namespace={ns}", f"--lease-name={lease}", name=f"b-{lease}")
    wait_for(lambda: a.is_leader() or b.is_leader(), 30, what="a leader")
    time.sleep(3)  # a few renewals: never both
    assert [a.is_leader(), b.is_leader()].count(True) == 1
    leader, standby = (a, b) if a.is_leader() else (b, a)
    assert _lease_holder(operator_cluster, lease) == leader.identity

    apply(operator_cluster, ns, secret(), userservice("first"))
    wait_for(lambda: reconciled(operator_cluster, ns, "first"), 30)
    assert leader.metric_sum("userservice_operator_child_writes_total") > 0
    assert standby.metric_sum("userservice_operator_child_writes_total") == 0
    assert standby.metric_sum("userservice_operator_reconciles_total") == 0

    # the active replica dies without a goodbye; the standby takes over within 30 s
    leader.kill()
    killed_at = time.monotonic()
    wait_for(standby.is_leader, 30, what="standby takes over")
    took_over = time.monotonic() - killed_at
    apply(operator_cluster, ns, userservice("second"))
    wait_for(lambda: reconciled(operator_cluster, ns, "second"), 30 - (time.monotonic() - killed_at) + 5)
    print(
        f"\nmeasured: standby leads {took_over:.1f}s after kill -9, reconciles {time.monotonic() - killed_at:.1f}s"
    )
    assert get(operator_cluster, ns, "deployment", "second") is not None


def test_killed_mid_reconcile_converges_on_restart(
    operator_cluster: KubeCluster, solo_namespace: str, start_operator: Callable[..., Operator]
) -> None:
    ns = solo_namespace
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    args = (f"--namespace={ns}", f"--lease-name={lease}", "--lease-duration=5", "--renew-deadline=4")
    first = start_operator(*args, name=f"first-{lease}")
    wait_for(first.is_leader, 30)
    apply(operator_cluster, ns, secret(), *[userservice(f"k-{i:02d}", replicas=1) for i in range(40)])
    # kill it as soon as it has started writing children, before it can have finished all 40
    wait_for(lambda: first.metric_sum("userservice_operator_child_writes_total") >= 1, 30, interval=0.05)
    first.kill()
    deployments = operator_cluster.kubectl("-n", ns, "get", "deployments", "-o", "name").stdout.split()
    assert len(deployments) < 40, "the operator finished before it was killed; nothing was interrupted"
    second = start_operator(*args, name=f"second-{lease}")
    wait_for(second.is_leader, 30)

    def all_done() -> bool:
        items = json.loads(operator_cluster.kubectl("-n", ns, "get", "usvc", "-o", "json").stdout)["items"]
        ok = [
            u
            for u in items
            if (u.get("status") or {}).get("observedGeneration") == u["metadata"]["generation"]
        ]
        return len(ok) == 40

    wait_for(all_done, 90, interval=1, what="40 UserServices after restart")
    assert len(operator_cluster.kubectl("-n", ns, "get", "deployments", "-o", "name").stdout.split()) == 40
    assert second.errors() == []


def test_apiserver_restart_does_not_hang_watches(
    tmp_path: Path, start_operator: Callable[..., Operator], operator_cluster: KubeCluster
) -> None:
    """Watch streams are cut under a running operator; within 30 s of the API server's return a new
    UserService is reconciled. A private control plane, so other tests are not disturbed."""
    with running_cluster(tmp_path / "kube", controller_manager=False) as cluster:
        install_operator_api(cluster)
        ns = "solo-restart"
        cluster.kubectl("create", "namespace", ns)
        cluster.kubectl(
            "-n",
            ns,
            "create",
            "rolebinding",
            "developer-admin",
            "--clusterrole=cluster-admin",
            "--user=developer",
        )
        op = start_operator(f"--namespace={ns}", "--lease-name=restart", cluster=cluster, name="restart")
        wait_for(op.is_leader, 30)
        apply(cluster, ns, secret(), userservice("before"))
        wait_for(lambda: reconciled(cluster, ns, "before"), 30)

        cluster.restart_apiserver(down_seconds=5)
        back = time.monotonic()
        apply(cluster, ns, userservice("after"))
        wait_for(lambda: reconciled(cluster, ns, "after"), 30 - (time.monotonic() - back))
        print(
            f"\nmeasured: new UserService reconciled {time.monotonic() - back:.1f}s after the API server's return"
        )
        assert get(cluster, ns, "deployment", "after") is not None
        assert op.healthy()
        # and drift is still noticed through the re-established child watches
        cluster.kubectl("-n", ns, "delete", "service", "after")
        wait_for(lambda: get(cluster, ns, "service", "after"), 20, what="service re-created after restart")
        op.stop()


def test_health_and_metrics_endpoints(shared_operator: Operator) -> None:
    assert shared_operator.healthy()
    metrics = shared_operator.metrics()
    assert metrics["userservice_operator_leader"] == 1.0
    names = {k.split("{")[0] for k in metrics}
    for expected in (
        "userservice_operator_reconciles_total",
        "userservice_operator_reconcile_duration_seconds_bucket",
        "userservice_operator_managed_resources",
        "userservice_operator_leader",
    ):
        assert expected in names, expected
    # JSON log lines
    first = shared_operator.log_path.read_text().splitlines()[0]
    assert json.loads(first)["level"] == "INFO"
