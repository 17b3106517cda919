"""The fault matrix: the operator under what breaks controllers in production, against the real API server.

After each fault a new UserService gets its children and an edited one converges within a stated bound, the
operator process is the same one (or, where the fault is the process itself, a standby finishes the work),
and nothing is left half-done. Each test prints its measured recovery time (`pytest -s` shows them).

The faults that restart or intercept the API server, or remove CRDs, run on a private control plane shared by
this module (`fault_cluster`), so the other tests never see them.
"""

from __future__ import annotations

import copy
import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.operator.conftest import Operator, install_operator_api, wait_for
from tests.integration.operator.helpers import apply, condition, get, reconciled, secret, userservice
from tests.support.blackhole import black_hole_proxy
from tests.support.kube import KubeCluster, running_cluster
from userservice_operator.crd import crd_text

pytestmark = [pytest.mark.needs_kube, pytest.mark.timeout(600)]

HERE = Path(__file__).parent
MONITORING_CRDS = HERE / "monitoring_crds.yaml"
# Bounds of recovery, generous for a loaded 2-core machine. A watch that goes silent is noticed within kopf's
# inactivity timeout (70 s, handlers.configure_settings), a silent API call within the reconcile path's read
# timeout (30 s, kube.TIMEOUT); the rest within a few reconcile passes.
CONVERGE = 60.0
SILENT_WATCH = 70.0 + 30.0 + CONVERGE


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with running_cluster(tmp_path_factory.mktemp("faults"), controller_manager=False) as cluster:
        install_operator_api(cluster)
        yield cluster


def namespace(cluster: KubeCluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl(
        "-n",
        name,
        "create",
        "rolebinding",
        "developer-admin",
        "--clusterrole=cluster-admin",
        "--user=developer",
    )
    return name


def operator_args(ns: str, *extra: str) -> tuple[str, ...]:
    return (f"--namespace={ns}", f"--lease-name=lease-{ns}", *extra)


def converged(cluster: KubeCluster, ns: str, name: str, replicas: int | None = None) -> bool:
    """The UserService's status describes its generation and its Deployment exists (with `replicas`)."""
    if not reconciled(cluster, ns, name):
        return False
    dep = get(cluster, ns, "deployment", name)
    return dep is not None and (replicas is None or dep["spec"]["replicas"] == replicas)


def recover(cluster: KubeCluster, ns: str, since: float, bound: float, edited: dict[str, Any]) -> float:
    """A new UserService gets its children and the existing one `edited` (its spec.replicas changed) converges,
    within `bound` seconds of `since`; the seconds that took."""
    fresh = f"new-{uuid.uuid4().hex[:4]}"
    apply(cluster, ns, userservice(fresh), edited)
    name, replicas = edited["metadata"]["name"], edited["spec"]["replicas"]
    left = bound - (time.monotonic() - since)
    wait_for(lambda: converged(cluster, ns, fresh), left, interval=0.5, what=f"new UserService {fresh}")
    left = bound - (time.monotonic() - since)
    wait_for(
        lambda: converged(cluster, ns, name, replicas), left, interval=0.5, what=f"edited UserService {name}"
    )
    return time.monotonic() - since


def measured(fault: str, seconds: float, bound: float) -> None:
    print(f"\nmeasured: {fault}: recovered in {seconds:.1f}s (bound {bound:.0f}s)")


class HealthRecorder:
    """Polls an operator's /healthz in the background; what it answered."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.seen: list[int | None] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.done.wait(0.5):
            self.seen.append(self.op.health())

    def stop(self) -> list[int | None]:
        self.done.set()
        self.thread.join(timeout=10)
        return self.seen


# --- 1. the monitoring CRDs deleted while the operator runs, then installed again ---------------------------
def monitored(name: str, **spec: Any) -> dict[str, Any]:
    monitoring = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
    return userservice(name, monitoring=monitoring, **spec)


def monitoring_children(cluster: KubeCluster, ns: str, name: str) -> bool:
    return all(
        get(cluster, ns, kind, name) is not None
        for kind in ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")
    )


def install_monitoring(cluster: KubeCluster) -> None:
    cluster.kubectl("apply", "-f", str(MONITORING_CRDS))
    for crd in ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"):
        cluster.wait_established(crd)


def test_monitoring_crds_deleted_and_installed_again(
    fault_cluster: KubeCluster, start_operator: Callable[..., Operator]
) -> None:
    cluster = fault_cluster
    ns = namespace(cluster, "crds")
    install_monitoring(cluster)
    op = start_operator(*operator_args(ns), cluster=cluster, name=f"crds-{ns}")
    op.wait_serving(ns)
    apply(cluster, ns, secret(), monitored("mon"))
    wait_for(
        lambda: monitoring_children(cluster, ns, "mon"), CONVERGE, what="ServiceMonitor and PrometheusRule"
    )
    try:
        for cycle in range(10):  # where a watch fails, it is a race: give it many chances
            cluster.kubectl("delete", "-f", str(MONITORING_CRDS), "--wait=true")
            gone = time.monotonic()
            took = recover(cluster, ns, gone, CONVERGE, monitored("mon", replicas=2 + cycle))
            wait_for(
                lambda: (
                    condition(get(cluster, ns, "usvc", "mon"), "Monitoring")["reason"] == "CRDNotInstalled"
                ),
                CONVERGE,
                what="Monitoring condition CRDNotInstalled",
            )
            measured(f"monitoring CRDs deleted (cycle {cycle + 1})", took, CONVERGE)
            install_monitoring(cluster)
            back = time.monotonic()
            wait_for(
                lambda: monitoring_children(cluster, ns, "mon"),
                CONVERGE,
                interval=0.5,
                what="ServiceMonitor and PrometheusRule back",
            )
            measured(
                f"monitoring CRDs installed again (cycle {cycle + 1})", time.monotonic() - back, CONVERGE
            )
        assert op.exit_code() is None and op.healthy(), "the operator was restarted"
    finally:
        install_monitoring(cluster)


# --- 2. the UserService CRD applied again with an added field, as a chart upgrade does ------------------------
def test_userservice_crd_applied_again_with_an_added_field(
    fault_cluster: KubeCluster, start_operator: Callable[..., Operator]
) -> None:
    cluster = fault_cluster
    ns = namespace(cluster, "upgrade")
    op = start_operator(*operator_args(ns), cluster=cluster, name=f"upgrade-{ns}")
    op.wait_serving(ns)
    apply(cluster, ns, secret(), userservice("before"))
    wait_for(lambda: converged(cluster, ns, "before"), CONVERGE)
    crd = yaml.safe_load(crd_text())
    upgraded = copy.deepcopy(crd)
    spec = upgraded["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["addedInAnUpgrade"] = {"type": "string", "description": "a field a later release adds"}
    try:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(upgraded))
        applied = time.monotonic()
        took = recover(cluster, ns, applied, CONVERGE, userservice("before", replicas=2))
        measured("UserService CRD applied again with an added field", took, CONVERGE)
        assert op.exit_code() is None and op.healthy(), "the operator was restarted"
    finally:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(crd))


# --- 3. the leader SIGKILLed in the middle of its passes ------------------------------------------------------
def test_leader_killed_mid_pass_standby_finishes(
    operator_cluster: KubeCluster, solo_namespace: str, start_operator: Callable[..., Operator]
) -> None:
    cluster, ns = operator_cluster, solo_namespace
    args = (*operator_args(ns), "--lease-duration=5", "--renew-deadline=4", "--resync-seconds=3")
    first = start_operator(*args, name=f"first-{ns}")
    first.wait_serving(ns)
    standby = start_operator(*args, name=f"standby-{ns}")
    names = [f"k-{i:02d}" for i in range(30)]
    apply(cluster, ns, *[userservice(n, replicas=1) for n in names])
    wait_for(lambda: first.metric_sum("userservice_operator_child_writes_total") >= 3, 60, interval=0.05)
    first.kill()
    killed = time.monotonic()
    done = [n for n in names if get(cluster, ns, "deployment", n) is not None]
    assert len(done) < len(names), "the leader finished before it was killed; nothing was interrupted"
    bound = 5 + 2 + 2 * CONVERGE  # the Lease expires, one retry period, then the passes

    def all_converged() -> bool:
        items = json.loads(cluster.kubectl("-n", ns, "get", "usvc", "-o", "json").stdout)["items"]
        by_name = {u["metadata"]["name"]: u for u in items}
        return all(
            (by_name[n].get("status") or {}).get("observedGeneration") == by_name[n]["metadata"]["generation"]
            for n in names
        )

    wait_for(all_converged, bound, interval=1, what="every UserService after the takeover")
    measured("leader SIGKILLed mid-pass, standby finished", time.monotonic() - killed, bound)
    for n in names:
        for kind in ("serviceaccount", "service", "networkpolicy", "deployment"):
            assert get(cluster, ns, kind, n) is not None, f"{kind} {n} missing after the takeover"
    # No child is left half-applied: with every child as the spec wants it, passes write nothing more.
    writes = standby.metric_sum("userservice_operator_child_writes_total")
    passes = standby.metric_sum("userservice_operator_reconciles_total")
    wait_for(
        lambda: standby.metric_sum("userservice_operator_reconciles_total") >= passes + 2 * len(names),
        CONVERGE,
        what="two more resyncs of every UserService",
    )
    assert standby.metric_sum("userservice_operator_child_writes_total") == writes
    assert standby.errors() == []


# --- 4. the API server restarted and unreachable for 60 s ------------------------------------------------------
def test_apiserver_down_for_a_minute_operator_resumes_without_restart(
    fault_cluster: KubeCluster, start_operator: Callable[..., Operator]
) -> None:
    cluster = fault_cluster
    ns = namespace(cluster, "outage")
    op = start_operator(*operator_args(ns), cluster=cluster, name=f"outage-{ns}")
    op.wait_serving(ns)
    apply(cluster, ns, secret(), userservice("before"))
    wait_for(lambda: converged(cluster, ns, "before"), CONVERGE)
    health = HealthRecorder(op)
    cluster.restart_apiserver(down_seconds=60)
    back = time.monotonic()
    took = recover(cluster, ns, back, CONVERGE, userservice("before", replicas=2))
    seen = health.stop()
    measured("API server down for 60 s", took, CONVERGE)
    assert op.exit_code() is None, f"the operator exited:\n{op.log()}"
    assert op.is_leader()
    assert set(seen) == {200}, f"/healthz answered {sorted(set(seen), key=str)} during the outage"


# --- 5. a watch that stops delivering without closing ------------------------------------------------------------
def test_silent_watch_is_noticed_and_resumed(
    fault_cluster: KubeCluster, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    cluster = fault_cluster
    ns = namespace(cluster, "silent")
    with black_hole_proxy(cluster.api_port) as proxy:
        kubeconfig = tmp_path / "through-proxy.kubeconfig"
        kubeconfig.write_text(
            cluster.kubeconfig_for("userservice-operator")
            .read_text()
            .replace(cluster.server, f"https://127.0.0.1:{proxy.port}")
        )
        op = start_operator(
            *operator_args(ns, f"--kubeconfig={kubeconfig}"), cluster=cluster, name=f"silent-{ns}"
        )
        op.wait_serving(ns)
        apply(cluster, ns, secret(), userservice("before"))
        wait_for(lambda: converged(cluster, ns, "before"), CONVERGE)
        frozen = proxy.black_hole()
        silenced = time.monotonic()
        assert frozen > 0
        took = recover(cluster, ns, silenced, SILENT_WATCH, userservice("before", replicas=2))
        measured(f"{frozen} connections black-holed (watches and API calls)", took, SILENT_WATCH)
        assert op.exit_code() is None, f"the operator exited:\n{op.log()}"
        assert op.healthy() and op.is_leader()


# --- 6. kopf hung inside the process ------------------------------------------------------------------------------
FAULTY = (sys.executable, "-m", "tests.integration.operator.hung_kopf")


def test_hung_kopf_fails_liveness_and_exits_for_the_standby(
    operator_cluster: KubeCluster, solo_namespace: str, start_operator: Callable[..., Operator]
) -> None:
    cluster, ns = operator_cluster, solo_namespace
    lease = f"lease-{ns}"
    hung = start_operator(*operator_args(ns), name=f"hung-{ns}", command=FAULTY)
    hung.wait_serving(ns)
    apply(cluster, ns, secret(), userservice("before"))
    wait_for(lambda: converged(cluster, ns, "before"), CONVERGE)
    standby = start_operator(*operator_args(ns), name=f"standby-{ns}")
    assert hung.proc is not None
    hung.proc.send_signal(signal.SIGUSR1)
    injected = time.monotonic()
    bound = 30.0  # the liveness check runs every second; the probe acts after its 3 failures of 10 s
    wait_for(lambda: hung.health() != 200, bound, interval=0.2, what="/healthz of the hung operator fails")
    failed = time.monotonic() - injected
    wait_for(lambda: hung.exit_code() is not None, bound, what="the hung operator exits")
    assert hung.exit_code() == 1, hung.log()
    exited = time.monotonic() - injected
    holder = json.loads(
        cluster.kubectl("-n", "userservice-system", "get", "lease", lease, "-o", "json").stdout
    )["spec"].get("holderIdentity")
    assert holder in ("", None, standby.identity), f"the Lease is still held by {holder}"
    took = recover(cluster, ns, injected, bound + CONVERGE, userservice("before", replicas=2))
    assert standby.is_leader()
    measured("kopf hung in-process: /healthz failed", failed, bound)
    measured("kopf hung in-process: exited with the Lease released", exited, bound)
    measured("kopf hung in-process: standby reconciled", took, bound + CONVERGE)


def test_passes_that_never_end_fail_liveness(
    operator_cluster: KubeCluster, solo_namespace: str, start_operator: Callable[..., Operator]
) -> None:
    cluster, ns = operator_cluster, solo_namespace
    stall = 10.0
    op = start_operator(
        *operator_args(ns, f"--stall-seconds={stall:.0f}"), name=f"stall-{ns}", command=FAULTY
    )
    op.wait_serving(ns)
    apply(cluster, ns, secret(), userservice("before"))
    wait_for(lambda: converged(cluster, ns, "before"), CONVERGE)
    assert op.proc is not None
    op.proc.send_signal(signal.SIGUSR2)
    blocked = time.monotonic()
    apply(cluster, ns, userservice("before", replicas=2))  # work that waits for a pass that cannot end
    bound = stall + 30.0
    wait_for(lambda: op.health() != 200, bound, interval=0.2, what="/healthz of the stalled operator fails")
    failed = time.monotonic() - blocked
    wait_for(lambda: op.exit_code() is not None, bound, what="the stalled operator exits")
    assert op.exit_code() == 1, op.log()
    measured(f"reconcile passes blocked (--stall-seconds {stall:.0f}): /healthz failed", failed, bound)
    measured("reconcile passes blocked: exited", time.monotonic() - blocked, bound + 10)


# --- 7. a namespace created while kopf lists the namespaces ----------------------------------------------------
def test_namespace_created_between_kopf_listings_is_served(
    operator_cluster: KubeCluster, start_operator: Callable[..., Operator]
) -> None:
    """kopf ignores the namespaces its watch's own listing returns: one created after its first listing and
    before that one would never be served (namespaces.py lists them again on each resync)."""
    cluster = operator_cluster
    pattern = f"late-{uuid.uuid4().hex[:6]}"
    ns = f"{pattern}-a"
    create = [
        str(cluster.assets / "kubectl"),
        f"--kubeconfig={cluster.kubeconfig}",
        "create",
        "namespace",
        ns,
    ]
    try:
        op = start_operator(
            f"--namespace={pattern}-*",
            f"--lease-name=lease-{pattern}",
            "--resync-seconds=3",
            name=f"late-{pattern}",
            command=FAULTY,
            env={"RUN_BETWEEN_NAMESPACE_LISTINGS": json.dumps(create)},
        )
        took = op.wait_serving(ns)
        log = op.log(tail=400)
        assert "between the namespace listings" in log, log
        assert f"namespace {ns} matches --namespace but kopf's watch missed it" in log, log
        measured("namespace created between kopf's two listings: served", took, 30)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
