"""End to end on the local one-node cluster: a UserService with spec.database.maxConnections, scaled to its
maximum and then rolled (surge pods and the migration Job beside the old pods) under a write and list load. A
sampler counts this instance's sessions in PostgreSQL's pg_stat_activity all along: the count never passes the
budget, and no request fails."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import IMAGE, HostPostgres, kubectl
from tests.e2e.test_cluster import NAMESPACE, Threaded, Writer, call_as_admin, get_json, http, wait_until

pytestmark = [pytest.mark.needs_docker, pytest.mark.timeout(1800)]

NAME = "budget"
MAX_REPLICAS = 3
# Peak 2 x 3 pods (old ones drain beside new ones in a rollout): (31 - 1) // 6 - 1 = 4 connections of pool each,
# + 1 of its own each, + the migration Job's 1.
BUDGET = 31


def manifest(namespace: str, min_replicas: int, env: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "userservice.io/v1alpha1",
        "kind": "UserService",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "image": IMAGE,
            "imagePullPolicy": "Never",
            "database": {"secretRef": {"name": "budget-db", "key": "url"}, "maxConnections": BUDGET},
            "autoscaling": {"minReplicas": min_replicas, "maxReplicas": MAX_REPLICAS},
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "monitoring": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
            "env": env,
            "preStopSleepSeconds": 3,
            "shutdownGracePeriodSeconds": 15,
        },
    }


@dataclass
class Sampler:
    """Counts the database's sessions (every pod's pools and listeners, the migration Job) a few times a second."""

    postgres: HostPostgres
    database: str
    counts: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{self.database}'"
        while not self._stop.is_set():
            self.counts.append(int(self.postgres.psql(sql)))
            time.sleep(0.2)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class Lister(Threaded):
    """Lists users through the Service from `threads` threads until stopped."""

    base: str
    threads: int = 4
    served: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = http(
                    "GET", self.base + "/v1/users?" + urllib.parse.urlencode({"page_size": 50})
                )
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append(repr(exc))
                continue
            if status == 200:
                self.served += 1
            else:
                self.failures.append(f"{status} {body[:200]!r}")


@pytest.fixture(scope="module")
def budget_namespace(
    cluster: Path, operator_release: str, host_postgres: HostPostgres
) -> Iterator[tuple[str, str]]:
    namespace = f"e2e-budget-{uuid.uuid4().hex[:6]}"
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    url = host_postgres.database_url(database)
    kubectl("create", "namespace", namespace)
    NAMESPACE[:] = [namespace]
    kubectl("-n", namespace, "create", "secret", "generic", "budget-db", f"--from-literal=url={url}")
    try:
        yield namespace, database
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _ready_pods(namespace: str) -> list[dict[str, Any]]:
    items = get_json(
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=server",
    )["items"]
    return [
        p
        for p in items
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def _rolled_out(namespace: str, replicas: int) -> bool:
    dep = get_json("-n", namespace, "get", "deployment", NAME)
    status = dep.get("status", {})
    return bool(
        status.get("observedGeneration") == dep["metadata"]["generation"]
        and status.get("updatedReplicas") == replicas
        and status.get("readyReplicas") == replicas
        and status.get("replicas") == replicas
    )


def test_scaled_to_the_maximum_and_rolled_under_load_within_the_budget(
    budget_namespace: tuple[str, str], host_postgres: HostPostgres
) -> None:
    namespace, database = budget_namespace
    kubectl("apply", "-f", "-", input=json.dumps(manifest(namespace, 1, [])))
    wait_until(
        "UserService Ready",
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in get_json("-n", namespace, "get", "userservice", NAME)
            .get("status", {})
            .get("conditions", [])
        ),
        timeout=300,
        every=3,
    )
    dep = get_json("-n", namespace, "get", "deployment", NAME)
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DB_POOL_MAX"] == "4", env
    svc = get_json("-n", namespace, "get", "service", NAME)
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    base = f"http://{svc['spec']['clusterIP']}:{ports['http']}"
    management = f"http://{svc['spec']['clusterIP']}:{ports['management']}"
    wait_until(
        "readiness through the ClusterIP", lambda: http("GET", management + "/readyz")[0] == 200, 60, 1
    )
    call_as_admin(namespace, NAME)

    with (
        Sampler(host_postgres, database) as sampler,
        Writer(base, threads=4) as writes,
        Lister(base) as lists,
    ):
        # To the maximum: the HPA's floor raised to its ceiling.
        kubectl("apply", "-f", "-", input=json.dumps(manifest(namespace, MAX_REPLICAS, [])))
        wait_until(f"{MAX_REPLICAS} ready pods", lambda: len(_ready_pods(namespace)) >= MAX_REPLICAS, 300, 2)
        time.sleep(10)
        # A rollout at the maximum: a surge pod and the migration Job beside the old pods.
        kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(manifest(namespace, MAX_REPLICAS, [{"name": "ROLL", "value": "1"}])),
        )
        wait_until("the rollout at the maximum", lambda: _rolled_out(namespace, MAX_REPLICAS), 400, 2)
        time.sleep(10)

    assert sampler.counts, "the sampler saw nothing"
    peak = max(sampler.counts)
    print(f"sessions of the instance: peak {peak} of a budget of {BUDGET} over {len(sampler.counts)} samples")
    assert peak <= BUDGET, sampler.counts
    assert peak > MAX_REPLICAS, sampler.counts  # the load did reach the pools of every pod
    assert writes.acked and lists.served, (writes.failures[:5], lists.failures[:5])
    assert not writes.failures, writes.failures[:5]
    assert not lists.failures, lists.failures[:5]
