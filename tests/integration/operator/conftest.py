"""Fixtures of the operator's integration tests: the CRD and RBAC installed on the real API server, and
`userservice-operator` run as a subprocess under the least-privilege user bound to rbac.yaml.

The shared operator (module `shared_operator`) watches the namespaces matching `it-*`; tests that need their
own operator processes (leader election, kill/restart) use namespaces named `solo-*` and start them with
`start_operator`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.operator.helpers import reconciled, secret, userservice
from tests.support.kube import KubeCluster, free_port
from userservice_operator.crd import SUBSCRIPTION_CRD_NAME, crd_text, rbac_text, subscription_crd_text

OPERATOR_USER = "userservice-operator"
LEASE_NAMESPACE = "userservice-system"
EXE = Path(sys.executable).parent / "userservice-operator"
# How long an operator may take from its start to its first reconciled UserService on a loaded 2-core machine.
SERVING_TIMEOUT = 120.0


def wait_for(fn: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25, what: str = "") -> Any:
    """Poll `fn` until it returns a truthy value without raising; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = fn()
            if result:
                return result
            last = result
        except (AssertionError, LookupError, TypeError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not converged within {timeout}s{' (' + what + ')' if what else ''}: {last!r}"
            )
        time.sleep(interval)


class Operator:
    """One `userservice-operator` subprocess."""

    def __init__(
        self,
        cluster: KubeCluster,
        workdir: Path,
        args: list[str],
        name: str,
        command: tuple[str, ...] = (str(EXE),),
        env: dict[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | (env or {})
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.log_path = workdir / f"operator-{name}.log"
        self.identity = f"op-{name}"
        self.args = [
            *command,
            f"--kubeconfig={cluster.kubeconfig_for(OPERATOR_USER)}",
            "--bind-address=127.0.0.1",
            f"--health-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
            f"--lease-namespace={LEASE_NAMESPACE}",
            f"--identity={self.identity}",
            "--crd-poll-seconds=2",
            "--backoff-max=5",
            "--log-level=info",
            *args,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        wait_for(self.healthy, 30, what="operator /healthz")
        return self

    def healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"operator exited:\n{self.log()}"
        return self.health() == 200

    def health(self) -> int | None:
        """The status of /healthz; None when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return None

    def wait_serving(self, namespace: str, timeout: float = SERVING_TIMEOUT) -> float:
        """Wait until this operator leads and has reconciled a fresh canary UserService in `namespace` (a held
        Lease says nothing about kopf's watches); the seconds it took. A slow start passes, a hung one fails."""
        started = time.monotonic()
        wait_for(self.is_leader, timeout, what=f"{self.identity} leads")
        name = f"canary-{uuid.uuid4().hex[:6]}"
        self.cluster.kubectl(
            "-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all([secret(), userservice(name)])
        )
        left = timeout - (time.monotonic() - started)
        try:
            wait_for(
                lambda: reconciled(self.cluster, namespace, name), left, what=f"canary {namespace}/{name}"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- operator log ---\n{self.log()}") from None
        return time.monotonic() - started

    def metrics(self) -> dict[str, float]:
        """Samples of the /metrics endpoint, keyed by `name{labels}`."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def metric_sum(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def is_leader(self) -> bool:
        return self.metrics().get("userservice_operator_leader", 0.0) == 1.0

    def exit_code(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self, tail: int = 80) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])

    def errors(self) -> list[dict[str, Any]]:
        """JSON log records at ERROR or above (tracebacks included)."""
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("level") in ("ERROR", "CRITICAL"):
                records.append(rec)
        return records


def install_operator_api(cluster: KubeCluster) -> None:
    """CRDs (from the operator package), RBAC (rbac.yaml) bound to the operator's user, its lease namespace."""
    cluster.kubectl("apply", "--server-side", "-f", "-", input=crd_text())
    cluster.kubectl("apply", "--server-side", "-f", "-", input=subscription_crd_text())
    cluster.wait_established("userservices.userservice.io")
    cluster.wait_established(SUBSCRIPTION_CRD_NAME)
    # the OpenAPI document (kubectl explain, client-side validation) is published a moment later
    wait_for(lambda: cluster.kubectl("explain", "userservices.spec", check=False).returncode == 0, 60)
    cluster.kubectl("create", "namespace", LEASE_NAMESPACE, check=False)
    docs = [d for d in yaml.safe_load_all(rbac_text()) if d]
    for doc in docs:
        if doc["kind"] == "Role":
            doc["metadata"]["namespace"] = LEASE_NAMESPACE
    subject = [{"kind": "User", "name": OPERATOR_USER, "apiGroup": "rbac.authorization.k8s.io"}]
    bindings = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject,
        }
        for name in ("userservice-operator", "userservice-operator-cluster")
    ]
    bindings.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "userservice-operator-leader-election", "namespace": LEASE_NAMESPACE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "userservice-operator-leader-election",
            },
            "subjects": subject,
        }
    )
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all([*docs, *bindings])
    )


@pytest.fixture(scope="session")
def operator_cluster(kube_cluster: KubeCluster) -> KubeCluster:
    """The session's control plane with the UserService CRD and the operator's RBAC installed."""
    install_operator_api(kube_cluster)
    return kube_cluster


@pytest.fixture(scope="session")
def operator_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("operator")


@pytest.fixture(scope="session")
def shared_operator(operator_cluster: KubeCluster, operator_workdir: Path) -> Iterator[Operator]:
    """One operator for the `it-*` namespaces, short resync so idle behaviour is observed often."""
    op = Operator(
        operator_cluster,
        operator_workdir,
        ["--namespace=it-*", "--lease-name=shared", "--resync-seconds=3"],
        "shared",
    ).start()
    canary = f"it-canary-{uuid.uuid4().hex[:6]}"
    operator_cluster.kubectl("create", "namespace", canary)
    try:
        op.wait_serving(canary)
    except BaseException:
        op.stop()  # a hung start must not outlive the session
        raise
    yield op
    op.stop()
    shutil.copy(op.log_path, operator_workdir / "operator-shared.final.log")


@pytest.fixture
def start_operator(
    operator_cluster: KubeCluster, operator_workdir: Path
) -> Iterator[Callable[..., Operator]]:
    """Start extra operator processes (stopped at teardown)."""
    started: list[Operator] = []

    def start(
        *args: str,
        name: str | None = None,
        cluster: KubeCluster | None = None,
        command: tuple[str, ...] = (str(EXE),),
        env: dict[str, str] | None = None,
    ) -> Operator:
        op = Operator(
            cluster or operator_cluster,
            operator_workdir,
            list(args),
            name or uuid.uuid4().hex[:6],
            command,
            env,
        )
        started.append(op)
        return op.start()

    yield start
    for op in started:
        op.stop()


def _namespace(cluster: KubeCluster, prefix: str) -> Iterator[str]:
    """A namespace where the user `developer` has the built-in `edit` role (UserServices aggregated in)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl(
        "-n", name, "create", "rolebinding", "developer-edit", "--clusterrole=edit", "--user=developer"
    )
    wait_for(
        lambda: (
            cluster.kubectl(
                "-n",
                name,
                "auth",
                "can-i",
                "create",
                "userservices.userservice.io",
                "--as=developer",
                check=False,
            ).stdout.strip()
            == "yes"
        ),
        30,
        what="edit role aggregated",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def it_namespace(operator_cluster: KubeCluster, shared_operator: Operator) -> Iterator[str]:
    """A fresh namespace watched by the shared operator."""
    yield from _namespace(operator_cluster, "it")


@pytest.fixture
def solo_namespace(operator_cluster: KubeCluster) -> Iterator[str]:
    """A fresh namespace no running operator watches (tests start their own)."""
    yield from _namespace(operator_cluster, "solo")
