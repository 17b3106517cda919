"""The operator's figures against a real kube-apiserver + etcd (no kube-controller-manager, so the operator
and this bench are the only writers): create -> all children exist, convergence of many UserServices at
once, writes per idle UserService, operator memory. Baseline: the API server creating a Deployment directly.
"""

from __future__ import annotations

import json
import shutil
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from bench import rounds, tools
from bench.stats import percentile, ratio
from tests.integration.operator.conftest import Operator, install_operator_api
from tests.integration.operator.helpers import secret, userservice
from tests.support.kube import KubeCluster

GROUP, VERSION, PLURAL = "userservice.io", "v1alpha1", "userservices"
CHILDREN = ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler")
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}


@dataclass(frozen=True)
class Plan:
    latency_count: int  # UserServices created one at a time, and Deployments (the baseline), per round
    rounds: int  # interleaved rounds of the create -> children figure and its baseline
    scale_count: int  # created at once
    idle_seconds: float
    resync_seconds: float
    deadline_seconds: float  # longest the convergence may take before the bench scales down its claim


def _spec(name: str) -> dict[str, Any]:
    return userservice(
        name, autoscaling={"minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 75}
    )


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": "registry.example/userservice:1.0.0"}]},
            },
        },
    }


class Children:
    """Watches the child kinds and the UserServices of a namespace; records when each first appeared."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.first_seen: dict[tuple[str, str], float] = {}
        self.converged: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        policy, hpa = client.PolicyV1Api(api), client.AutoscalingV2Api(api)
        custom = client.CustomObjectsApi(api)
        self.lists: dict[str, Callable[..., Any]] = {
            "Deployment": apps.list_namespaced_deployment,
            "Service": core.list_namespaced_service,
            "PodDisruptionBudget": policy.list_namespaced_pod_disruption_budget,
            "HorizontalPodAutoscaler": hpa.list_namespaced_horizontal_pod_autoscaler,
        }
        self.custom = custom
        self.threads = [threading.Thread(target=self._watch, args=(k,), daemon=True) for k in self.lists]
        self.threads.append(threading.Thread(target=self._watch_userservices, daemon=True))
        for t in self.threads:
            t.start()

    def _record(self, key: tuple[str, str]) -> None:
        with self.cond:
            self.first_seen.setdefault(key, time.perf_counter())
            self.cond.notify_all()

    def _watch(self, kind: str) -> None:
        while not self.stopped.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(self.lists[kind], self.namespace, timeout_seconds=30):
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._record((kind, ev["object"].metadata.name))
                    if self.stopped.is_set():
                        break
            except Exception:  # a dropped watch: list again
                time.sleep(0.2)

    def _watch_userservices(self) -> None:
        while not self.stopped.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    timeout_seconds=30,
                ):
                    obj = ev["object"]
                    status = obj.get("status") or {}
                    if status.get("observedGeneration") == obj["metadata"].get("generation"):
                        with self.cond:
                            self.converged.setdefault(obj["metadata"]["name"], time.perf_counter())
                            self.cond.notify_all()
                    if self.stopped.is_set():
                        break
            except Exception:
                time.sleep(0.2)

    def complete(self, name: str) -> float | None:
        """When the last child of `name` appeared, or None while one is missing."""
        times = [self.first_seen.get((kind, name)) for kind in CHILDREN]
        return None if None in times else max(t for t in times if t is not None)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def stop(self) -> None:
        self.stopped.set()


def _apiserver_writes(cluster: KubeCluster) -> dict[str, float]:
    """apiserver_request_total of write verbs, by resource (leases apart: they are per operator, not per
    UserService)."""
    ctx = ssl.create_default_context(cafile=str(cluster.ca_file))
    ctx.check_hostname = False
    req = urllib.request.Request(
        f"{cluster.server}/metrics", headers={"Authorization": f"Bearer {cluster.tokens['admin']}"}
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(
            part.split("=", 1) for part in labels_text[len("apiserver_request_total{") : -1].split(",")
        )
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") in WRITE_VERBS:
            resource = labels.get("resource", "") + (
                f"/{labels['subresource']}" if labels.get("subresource") else ""
            )
            out[resource] = out.get(resource, 0.0) + float(value)
    return out


def _passes(operator: Operator) -> tuple[float, float]:
    """(seconds, count) of the operator's reconcile passes so far."""
    return (
        operator.metric_sum("userservice_operator_reconcile_duration_seconds_sum"),
        operator.metric_sum("userservice_operator_reconcile_duration_seconds_count"),
    )


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(plan: Plan, workdir: Path) -> dict[str, Any]:
    tools.kube_assets()
    cluster = KubeCluster(workdir / "kube", controller_manager=False).start()
    try:
        return _measure(plan, workdir, cluster)
    finally:
        cluster.stop()
        shutil.rmtree(workdir / "kube" / "etcd", ignore_errors=True)


def _create_namespace(cluster: KubeCluster, name: str) -> None:
    cluster.kubectl("create", "namespace", name)


def _measure(plan: Plan, workdir: Path, cluster: KubeCluster) -> dict[str, Any]:
    install_operator_api(cluster)
    api = cluster.client()
    apps = client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    for ns in ("bench-base", "bench-latency", "bench-scale"):
        _create_namespace(cluster, ns)
    operator = Operator(
        cluster,
        workdir,
        [
            "--namespace=bench-latency",
            "--namespace=bench-scale",
            "--lease-name=bench",
            f"--resync-seconds={plan.resync_seconds}",
        ],
        "bench",
    ).start()
    try:
        deadline = time.monotonic() + 30
        while not operator.is_leader():
            if time.monotonic() > deadline:
                raise TimeoutError(f"operator did not lead:\n{operator.log()}")
            time.sleep(0.2)
        assert operator.proc is not None
        pid = operator.proc.pid
        time.sleep(1)
        rss_empty = _rss_mib(pid)
        for ns in ("bench-latency", "bench-scale"):
            core.create_namespaced_secret(ns, secret())

        # create -> all children, one at a time, in rounds with the baseline: the API server's own create
        # latency for a Deployment (same client, one at a time)
        print(
            f"operator: {plan.rounds} rounds of {plan.latency_count} Deployments created directly, then"
            f" {plan.latency_count} UserServices one at a time (create -> children)",
            flush=True,
        )
        watcher = Children(api, "bench-latency")
        time.sleep(1)
        passes_before = _passes(operator)
        base: list[list[float]] = []
        latencies: list[list[float]] = []
        try:
            for r in range(plan.rounds):
                base.append([])
                for i in range(plan.latency_count):
                    t0 = time.perf_counter()
                    apps.create_namespaced_deployment("bench-base", _deployment(f"d{r}-{i}"))
                    base[-1].append(time.perf_counter() - t0)
                latencies.append([])
                for i in range(plan.latency_count):
                    name = f"lat-{r}-{i}"
                    t0 = time.perf_counter()
                    custom.create_namespaced_custom_object(
                        GROUP, VERSION, "bench-latency", PLURAL, _spec(name)
                    )
                    if not watcher.wait(lambda n=name: watcher.complete(n) is not None, 60):
                        raise TimeoutError(f"children of {name} missing after 60 s:\n{operator.log()}")
                    done = watcher.complete(name)
                    assert done is not None
                    latencies[-1].append(done - t0)
                print(
                    f"  round {r + 1}: Deployment create p50 {percentile(base[-1], 50) * 1000:.1f} ms,"
                    f" create -> children p50 {percentile(latencies[-1], 50) * 1000:.1f} ms",
                    flush=True,
                )
        finally:
            watcher.stop()
        passes = _passes(operator)
        pass_ms = (passes[0] - passes_before[0]) / max(1.0, passes[1] - passes_before[1]) * 1000
        # These are done with: the operator forgets them, so the scale test counts only its own.
        cluster.kubectl("-n", "bench-latency", "delete", "usvc", "--all", "--wait=false")

        # many at once
        n = plan.scale_count
        print(f"operator: {n} UserServices created at once", flush=True)
        watcher = Children(api, "bench-scale")
        time.sleep(1)
        try:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda i: custom.create_namespaced_custom_object(
                            GROUP, VERSION, "bench-scale", PLURAL, _spec(f"s-{i}")
                        ),
                        range(n),
                    )
                )
            created = time.perf_counter() - t0
            names = [f"s-{i}" for i in range(n)]

            def all_converged() -> bool:
                return len(watcher.converged) >= n and all(watcher.complete(x) is not None for x in names)

            converged_ok = watcher.wait(all_converged, plan.deadline_seconds)
            converge_seconds = time.perf_counter() - t0
            done_count = sum(1 for x in names if x in watcher.converged and watcher.complete(x) is not None)
        finally:
            watcher.stop()
        print(
            f"  {done_count}/{n} converged in {converge_seconds:.1f} s (creates took {created:.1f} s)",
            flush=True,
        )

        # idle: nothing changes; count every write the API server takes
        print(
            f"operator: idle writes over {plan.idle_seconds:.0f} s (resync every {plan.resync_seconds:.0f} s)",
            flush=True,
        )
        time.sleep(min(10.0, plan.resync_seconds))  # the last watch events of the convergence
        before = _apiserver_writes(cluster)
        op_before = operator.metric_sum("userservice_operator_child_writes_total")
        time.sleep(plan.idle_seconds)
        after = _apiserver_writes(cluster)
        op_after = operator.metric_sum("userservice_operator_child_writes_total")
        reconciles = operator.metric_sum('userservice_operator_reconciles_total{result="success"}')
        rss_loaded = _rss_mib(pid)
    finally:
        operator.stop()
    diff = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(after) | set(before)}
    diff = {k: v for k, v in diff.items() if v}
    lease_writes = diff.pop("leases", 0.0)
    idle_writes = sum(diff.values())
    minutes = plan.idle_seconds / 60
    per_us_min = idle_writes / done_count / minutes if done_count else float("nan")
    naive = len(CHILDREN) * 60 / plan.resync_seconds  # apply every child on every resync
    b50 = percentile([x for r in base for x in r], 50) * 1000
    serial_floor = n * len(CHILDREN) * b50 / 1000
    create: dict[str, Any] = {
        "id": "operator.create_to_children",
        "group": "operator",
        "what": f"UserService create -> its {len(CHILDREN)} children exist"
        f" ({plan.rounds} rounds of {plan.latency_count})",
        "n": sum(len(r) for r in latencies),
        "baseline": "kube-apiserver creating one Deployment directly (same client, same rounds)",
        "goal": "p50_ratio <= 10",
        # the operator's own reconcile passes over those creates (the first of each, and the one its own status
        # write triggers): the rest of create -> children is watch delivery and the bench's own watch
        "operator_pass_mean_ms": round(pass_ms, 1),
    }
    rounds.summarize(
        create,
        {f"p{p}_ms": [percentile(r, p) * 1000 for r in latencies] for p in (50, 99)},
        {f"p{p}_ms": [percentile(r, p) * 1000 for r in base] for p in (50, 99)},
    )
    figures = [
        create,
        {
            "id": "operator.converge",
            "group": "operator",
            "what": f"{n} UserServices created at once -> all children and status",
            "count": n,
            "converged": done_count,
            "complete": converged_ok,
            "seconds": round(converge_seconds, 2),
            "create_seconds": round(created, 2),
            "per_resource_ms": round(converge_seconds / n * 1000, 1),
            "baseline": f"{n} x {len(CHILDREN)} children created one by one at the API server's Deployment "
            "create p50 (derived)",
            "baseline_seconds": round(serial_floor, 2),
            "seconds_ratio": ratio(converge_seconds, serial_floor),
            "goal": "seconds < 30",
        },
        {
            "id": "operator.idle_writes",
            "group": "operator",
            "what": f"writes per idle UserService per minute ({done_count} idle, {plan.idle_seconds:.0f} s, "
            f"resync every {plan.resync_seconds:.0f} s)",
            "writes_per_us_per_min": round(per_us_min, 4),
            "idle_writes": idle_writes,
            "writes_by_resource": diff,
            "lease_writes": lease_writes,
            "operator_child_writes": op_after - op_before,
            "reconcile_passes_total": reconciles,
            "baseline": "a controller that applies every child on every resync",
            "baseline_writes_per_us_per_min": naive,
            "writes_ratio": ratio(per_us_min, naive),
        },
        {
            "id": "operator.rss",
            "group": "operator",
            "what": f"operator resident memory with {done_count} UserServices",
            "rss_mib": round(rss_loaded, 1),
            "baseline": "the same operator leading with no UserService",
            "baseline_rss_mib": round(rss_empty, 1),
            "rss_ratio": ratio(rss_loaded, rss_empty),
        },
    ]
    for fig in figures:
        print(
            f"  {fig['id']}: {json.dumps({k: v for k, v in fig.items() if k not in ('id', 'group', 'what', 'baseline', 'writes_by_resource')})}",
            flush=True,
        )
    return {"figures": figures, "apiserver": "kube-apiserver + etcd (no controller-manager)"}
