"""Request-rate autoscaling and SLO rules on the local one-node cluster, with a UserService of its own.

prometheus-adapter (hack/cluster.sh) serves `userservice_requests_per_second` from the cluster's Prometheus; the
HPA scales on it with a CPU target no pod can reach, so the request rate alone moves it. The same run checks
that Prometheus loaded the operator's SLO rules and evaluates their recording rules against the traffic.

The load reaches the API through one Service port (API_PORT) with one set of request headers (api_headers()):
the two places to change when the API moves port or asks for credentials.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.e2e.conftest import CLUSTER_DIR, IMAGE, HostPostgres, kubectl
from tests.e2e.test_cluster import auth_headers, call_as_admin, get_json, prometheus, wait_until
from userservice.v1 import user_service_pb2, user_service_pb2_grpc
from userservice_operator.children.promql import REQUESTS_METRIC
from userservice_operator.children.slo import record_name

pytestmark = [pytest.mark.needs_docker, pytest.mark.timeout(900)]

NAME = "rps"
API_PORT = "http"  # the Service port (by name) the REST load goes to; gRPC goes to the `grpc` port
TARGET_RPS = 5  # per pod
LOAD_RPS = 24  # a third REST, the rest gRPC: enough for the maximum of 3 pods
MIN, MAX = 1, 3
CPU_TARGET = 1000  # percent of the 100m request: a whole core per pod, which the load never comes near


def api_headers() -> dict[str, str]:
    """Headers of every API request (REST; gRPC sends them as metadata): the ServiceAccount token of
    call_as_admin."""
    return auth_headers()


def manifest(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "userservice.io/v1alpha1",
        "kind": "UserService",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "image": IMAGE,
            "imagePullPolicy": "Never",
            "database": {"secretRef": {"name": "rps-db", "key": "url"}},
            "autoscaling": {
                "minReplicas": MIN,
                "maxReplicas": MAX,
                "targetCPUUtilizationPercentage": CPU_TARGET,
                "targetRequestsPerSecond": TARGET_RPS,
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 5}],
                    },
                    "scaleDown": {
                        "stabilizationWindowSeconds": 15,
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}],
                    },
                },
            },
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "monitoring": {"serviceMonitor": {"interval": "5s"}},
            "slo": {
                "availability": {"objective": 99.9},
                "latency": {"objective": 99, "thresholdSeconds": 0.25},
            },
            "preStopSleepSeconds": 1,
            "shutdownGracePeriodSeconds": 5,
        },
    }


@dataclass
class Load:
    """About `rps` requests per second from a few threads: REST list calls and gRPC ListUsers."""

    http: str
    grpc: str
    rps: int
    sent: list[int] = field(default_factory=lambda: [0, 0])  # ok, failed
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _rest(self, every: float) -> None:
        req = urllib.request.Request(self.http + "/v1/users?page_size=1", headers=api_headers())
        while not self._stop.wait(every):
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    r.read()
                self.sent[0] += 1
            except OSError:
                self.sent[1] += 1

    def _grpc(self, every: float) -> None:
        metadata = tuple((k.lower(), v) for k, v in api_headers().items())
        with grpc.insecure_channel(self.grpc) as channel:
            stub = user_service_pb2_grpc.UserServiceStub(channel)
            while not self._stop.wait(every):
                try:
                    stub.ListUsers(
                        user_service_pb2.ListUsersRequest(page_size=1), timeout=10, metadata=metadata
                    )
                    self.sent[0] += 1
                except grpc.RpcError:
                    self.sent[1] += 1

    def __enter__(self) -> Load:
        # Two REST and two gRPC threads; new gRPC channels per thread spread the calls over the pods.
        for target, share in ((self._rest, 1 / 3), (self._grpc, 2 / 3)):
            for _ in range(2):
                t = threading.Thread(target=target, args=(2 / (self.rps * share),), daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


@dataclass
class Deployed:
    namespace: str
    http: str = ""
    grpc: str = ""

    def hpa(self) -> dict[str, Any]:
        return dict(get_json("-n", self.namespace, "get", "hpa", NAME))

    def server_pods(self) -> list[dict[str, Any]]:
        items = get_json(
            "-n",
            self.namespace,
            "get",
            "pods",
            "-l",
            f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=server",
        )["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.server_pods()
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]


@pytest.fixture(scope="module")
def deployed(cluster: Path, operator_release: str, host_postgres: HostPostgres) -> Iterator[Deployed]:
    namespace = f"e2e-rps-{uuid.uuid4().hex[:6]}"
    url = host_postgres.database_url(f"e2e_rps_{uuid.uuid4().hex[:8]}")
    kubectl("create", "namespace", namespace)
    kubectl("-n", namespace, "create", "secret", "generic", "rps-db", f"--from-literal=url={url}")
    try:
        yield Deployed(namespace)
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def adapter_state(deployed: Deployed) -> str:
    """What to see when the metric never arrives: the HPA, the custom metrics API, the adapter's last words."""
    log = CLUSTER_DIR / "logs" / "prometheus-adapter.log"
    return "\n".join(
        [
            json.dumps(deployed.hpa().get("status", {})),
            kubectl("get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2", check=False),
            *(log.read_text().splitlines()[-5:] if log.exists() else ["no adapter log"]),
        ]
    )


def _metric(hpa: dict[str, Any], kind: str) -> dict[str, Any]:
    """The HPA's current reading of one metric type (Pods or Resource)."""
    for m in (hpa.get("status") or {}).get("currentMetrics") or []:
        if m.get("type") == kind:
            return dict(m)
    return {}


def test_request_rate_scales_up_and_back_down(deployed: Deployed) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(manifest(deployed.namespace)))

    def ready() -> bool:
        status = get_json("-n", deployed.namespace, "get", "userservice", NAME).get("status", {})
        conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return conds.get("Ready") == "True" and status.get("readyReplicas", 0) >= MIN

    wait_until("UserService Ready", ready, timeout=240, every=3)
    call_as_admin(deployed.namespace, NAME)
    svc = get_json("-n", deployed.namespace, "get", "service", NAME)
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    deployed.http = f"http://{svc['spec']['clusterIP']}:{ports[API_PORT]}"
    deployed.grpc = f"{svc['spec']['clusterIP']}:{ports['grpc']}"
    assert len(deployed.server_pods()) == MIN

    with Load(deployed.http, deployed.grpc, LOAD_RPS) as load:
        started = time.monotonic()
        try:
            served = wait_until(
                f"the adapter serves {REQUESTS_METRIC} to the HPA",
                lambda: _metric(deployed.hpa(), "Pods").get("pods", {}).get("current"),
                timeout=150,
                every=3,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{adapter_state(deployed)}") from None
        metric_after = time.monotonic() - started
        wait_until(
            "HPA scales up on the request rate",
            lambda: (h := deployed.hpa())["status"].get("desiredReplicas", 0) > MIN and h,
            timeout=150,
            every=2,
        )
        up_decided = time.monotonic() - started
        rate = float(served["averageValue"].rstrip("m")) / (
            1000 if served["averageValue"].endswith("m") else 1
        )
        wait_until(f"{MAX} ready pods", lambda: len(deployed.ready_pods()) >= MAX, timeout=150, every=2)
        up_ready = time.monotonic() - started
        slo_rules_evaluated(deployed)
        # CPU is not why: under load its reading stays under the target, so its own recommendation never
        # exceeds the current replicas.
        cpu = wait_until(
            "a CPU reading (metrics-server)",
            lambda: (
                _metric(deployed.hpa(), "Resource")
                .get("resource", {})
                .get("current", {})
                .get("averageUtilization")
            ),
            timeout=90,
            every=3,
        )
        assert cpu < CPU_TARGET, deployed.hpa()["status"]

        def metric_condition() -> dict[str, Any]:
            status = get_json("-n", deployed.namespace, "get", "userservice", NAME).get("status", {})
            conds = {c["type"]: c for c in status.get("conditions", [])}
            return dict(conds.get("AutoscalingMetricAvailable", {}))

        cond = wait_until(
            "AutoscalingMetricAvailable=True",
            lambda: metric_condition().get("status") == "True" and metric_condition(),
            60,
            3,
        )
        assert cond["reason"] == "ValidMetricFound", cond
    assert load.sent[0] > 0 and load.sent[1] <= load.sent[0] // 100, load.sent

    stopped = time.monotonic()
    wait_until(
        "HPA back at the minimum after the load stopped",
        lambda: deployed.hpa()["status"].get("desiredReplicas") == MIN and len(deployed.server_pods()) == MIN,
        timeout=240,
        every=2,
    )
    down = time.monotonic() - stopped
    print(
        f"\nrequest-rate autoscaling: {LOAD_RPS} req/s against {TARGET_RPS} req/s per pod; metric served after "
        f"{metric_after:.0f}s (first reading {rate:.1f} req/s per pod, CPU {cpu}% of {CPU_TARGET}%); scale-up decided after {up_decided:.0f}s, "
        f"{MAX} pods ready after {up_ready:.0f}s; back to {MIN} pod {down:.0f}s after the load stopped "
        f"({load.sent[0]} requests, {load.sent[1]} failed)"
    )
    assert math.isfinite(rate) and rate > 0


def slo_rules_evaluated(deployed: Deployed) -> None:
    """Prometheus loaded the SLO group and its recording rules give values for this UserService's traffic."""
    group = f"userservice-slo.{deployed.namespace}.{NAME}"

    def loaded() -> list[dict[str, Any]]:
        groups = prometheus("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups if g["name"] == group for r in g["rules"]]
        assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
        return rules

    rules = wait_until("Prometheus loads the SLO rules", loaded, timeout=180, every=5)
    assert {r["name"] for r in rules if r["type"] == "alerting"} == {
        "UserServiceAvailabilityFastBurn",
        "UserServiceAvailabilitySlowBurn",
        "UserServiceLatencyFastBurn",
        "UserServiceLatencySlowBurn",
    }
    for sli in ("availability", "latency"):
        query = f'{record_name(sli, "5m")}{{namespace="{deployed.namespace}",service="{NAME}"}}'
        result = wait_until(
            f"{query} has a value",
            lambda q=query: prometheus("/api/v1/query", query=q)["data"]["result"],
            timeout=120,
            every=5,
        )
        value = float(result[0]["value"][1])
        assert 0 <= value <= 1, result
        if sli == "availability":
            assert value < 0.01, result  # the load's requests succeed

    def budgets() -> dict[str, Any]:
        slo = get_json("-n", deployed.namespace, "get", "userservice", NAME).get("status", {}).get("slo", {})
        return (
            slo if all("errorBudgetRemaining" in slo.get(s, {}) for s in ("availability", "latency")) else {}
        )

    # the operator (--prometheus-url, tests/e2e/conftest.py) reads the budgets on its next pass
    slo = wait_until("status.slo with the error budgets", budgets, timeout=120, every=5)
    assert slo["availability"]["objective"] == 99.9 and slo["availability"]["errorBudgetRemaining"] > 0.5, slo
    assert slo["latency"]["objective"] == 99 and slo["latency"]["errorBudgetRemaining"] <= 1, slo
