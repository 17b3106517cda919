"""A real Kubernetes control plane for tests: etcd + kube-apiserver (+ kube-controller-manager).

The binaries come from `KUBEBUILDER_ASSETS` (the controller-runtime envtest layout: a folder holding
`etcd`, `kube-apiserver`, `kubectl` and, optionally, `kube-controller-manager`); `make tools` builds them
into `.cache/tools/k8s/<version>-linux-amd64/` when missing. A missing binary skips the test on a laptop and
fails it in CI (`tests/support/require.py`).

Everything listens on free ports on 127.0.0.1 and lives in a temporary directory; teardown stops every
process it started. The API server serves TLS with a self-signed certificate (`--cert-dir`), authenticates
static bearer tokens (users below) and authorizes with RBAC. kube-controller-manager runs when present, so
garbage collection (ownerReferences), ReplicaSets, Jobs' pods and namespace deletion happen for real. There is
no scheduler and no kubelet: pods stay Pending.

Fixtures (session-scoped, registered through `tests/conftest.py`):

- `kube_cluster` -> `KubeCluster`: `.kubeconfig` (admin, a path), `.server`, `.client()` (a kubernetes
  `ApiClient` as admin), `.kubectl(*args, input=None)` (runs the real kubectl), `.kubeconfig_for(user)`
  (kubeconfig of another static user: `developer`, `userservice-operator`; they have no rights until bound
  with RBAC), `.restart_apiserver()` (SIGKILL and start again on the same port and etcd), `.logs()`.
- `kubeconfig` -> `Path` of the admin kubeconfig.
- `kube_client` -> admin `kubernetes.client.ApiClient`.

`KubeCluster(...).start()` may also be used directly for a private control plane (e.g. a test that needs to
restart it without disturbing other tests).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.require import require

USERS = {
    # user: groups
    "admin": ["system:masters"],
    "developer": [],
    "userservice-operator": [],
}


def assets_dir() -> Path | None:
    value = os.environ.get("KUBEBUILDER_ASSETS")
    return Path(value) if value else None


def missing_binaries(with_controller_manager: bool = True) -> list[str]:
    assets = assets_dir()
    names = ["etcd", "kube-apiserver", "kubectl"] + (
        ["kube-controller-manager"] if with_controller_manager else []
    )
    if assets is None:
        return names
    return [n for n in names if not os.access(assets / n, os.X_OK)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_service_account_key(directory: Path) -> tuple[Path, Path]:
    """An RSA key pair for service-account tokens (openssl)."""
    private = directory / "sa.key"
    public = directory / "sa.pub"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-out", str(public)],
        check=True,
        capture_output=True,
    )
    return private, public


class KubeCluster:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback; see the module docstring."""

    def __init__(self, workdir: Path, *, controller_manager: bool = True) -> None:
        assets = assets_dir()
        assert assets is not None, "KUBEBUILDER_ASSETS is not set"
        self.assets = assets
        self.workdir = workdir
        self.with_controller_manager = controller_manager and os.access(
            assets / "kube-controller-manager", os.X_OK
        )
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.api_port = free_port()
        self.kcm_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.tokens = {user: os.urandom(16).hex() for user in USERS}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cert_dir = workdir / "certs"
        self.kubeconfig = workdir / "admin.kubeconfig"

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> KubeCluster:
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "etcd").mkdir(exist_ok=True)
        self.sa_key, self.sa_pub = _write_service_account_key(self.workdir)
        with (self.workdir / "tokens.csv").open("w") as f:
            for user, groups in USERS.items():
                f.write(f'{self.tokens[user]},{user},{user},"{",".join(groups)}"\n')
        try:
            self._start_etcd()
            self._start_apiserver()
            self._wait_ready()
            self.kubeconfig.write_text(self._kubeconfig_text("admin"))
            if self.with_controller_manager:
                self._start_controller_manager()
        except BaseException:
            print(self.logs())
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [str(self.assets / name if name != "etcd" else self.assets / "etcd"), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._spawn(
            "etcd",
            [
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--name=default",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

    def _apiserver_args(self) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={self.cert_dir}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.sa_pub}",
            f"--service-account-signing-key-file={self.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",  # room for thousands of Services (a /24 holds 254)
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--v=1",
        ]

    def _start_apiserver(self) -> None:
        self._spawn("kube-apiserver", self._apiserver_args())

    def _start_controller_manager(self) -> None:
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.kcm_port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.sa_key}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                "--controllers=*",
                "--concurrent-gc-syncs=5",
                "--v=1",
            ],
        )

    @property
    def ca_file(self) -> Path:
        return self.cert_dir / "apiserver.crt"

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        last: Any = None
        while time.monotonic() < deadline:
            proc = self.procs.get("kube-apiserver")
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"kube-apiserver exited with {proc.returncode}:\n{self.logs('kube-apiserver')}"
                )
            req = urllib.request.Request(
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.tokens['admin']}"}
            )
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except Exception as exc:
                last = exc
            time.sleep(0.3)
        raise TimeoutError(
            f"kube-apiserver not ready after {timeout}s: {last}\n{self.logs('kube-apiserver')}"
        )

    def restart_apiserver(self, down_seconds: float = 2.0) -> None:
        """Kill the API server (SIGKILL: every watch stream is cut) and start it again on the same port."""
        proc = self.procs.pop("kube-apiserver")
        proc.kill()
        proc.wait(timeout=30)
        time.sleep(down_seconds)
        self._start_apiserver()
        self._wait_ready()

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

    # --- access -------------------------------------------------------------------------------------
    def _kubeconfig_text(self, user: str) -> str:
        return (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: test\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority: {self.ca_file}\n"
            f"users:\n- name: {user}\n  user:\n    token: {self.tokens[user]}\n"
            f"contexts:\n- name: {user}@test\n  context:\n    cluster: test\n    user: {user}\n"
            f"current-context: {user}@test\n"
        )

    def kubeconfig_for(self, user: str) -> Path:
        path = self.workdir / f"{user}.kubeconfig"
        path.write_text(self._kubeconfig_text(user))
        return path

    def client(self, user: str = "admin") -> Any:
        from kubernetes import client, config

        cfg = client.Configuration()
        path = self.kubeconfig if user == "admin" else self.kubeconfig_for(user)
        config.load_kube_config(config_file=str(path), client_configuration=cfg)
        return client.ApiClient(cfg)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        user: str = "admin",
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        path = self.kubeconfig if user == "admin" else self.kubeconfig_for(user)
        result = subprocess.run(
            [str(self.assets / "kubectl"), f"--kubeconfig={path}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def wait_established(self, crd: str, timeout: float = 60) -> None:
        """Waits for a CRD's Established condition. `kubectl wait` gives up at once while the CRD has no
        conditions yet (a large schema on a busy API server), so poll instead."""
        jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
        deadline = time.monotonic() + timeout
        while True:
            out = self.kubectl("get", f"crd/{crd}", "-o", f"jsonpath={jsonpath}", check=False)
            if out.returncode == 0 and out.stdout.strip() == "True":
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {crd} not Established after {timeout}s: {out.stdout}{out.stderr}")
            time.sleep(0.2)

    def logs(self, name: str | None = None, tail: int = 60) -> str:
        names = [name] if name else ["etcd", "kube-apiserver", "kube-controller-manager"]
        out = []
        for n in names:
            path = self.workdir / f"{n}.log"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                out.append(f"--- {n} ({datetime.datetime.now():%H:%M:%S}) ---\n" + "\n".join(lines))
        return "\n".join(out)


@contextlib.contextmanager
def running_cluster(workdir: Path, *, controller_manager: bool = True) -> Iterator[KubeCluster]:
    """Start a private control plane in `workdir`; stop it on exit."""
    missing = missing_binaries(with_controller_manager=False)
    require(
        not missing, f"control-plane binaries missing in KUBEBUILDER_ASSETS: {missing} (run `make tools`)"
    )
    cluster = KubeCluster(workdir, controller_manager=controller_manager).start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir / "etcd", ignore_errors=True)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """The shared control plane of the test session (etcd + kube-apiserver + kube-controller-manager)."""
    missing = missing_binaries(with_controller_manager=True)
    require(
        not missing, f"control-plane binaries missing in KUBEBUILDER_ASSETS: {missing} (run `make tools`)"
    )
    with running_cluster(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kubeconfig(kube_cluster: KubeCluster) -> Path:
    return kube_cluster.kubeconfig


@pytest.fixture(scope="session")
def kube_client(kube_cluster: KubeCluster) -> Iterator[Any]:
    api = kube_cluster.client()
    yield api
    api.close()


def main() -> None:
    """`python -m tests.support.kube [KUBECONFIG_PATH]`: a throwaway control plane to try the operator on.

    Starts etcd, kube-apiserver and kube-controller-manager from KUBEBUILDER_ASSETS, installs the UserService
    CRD, writes an admin kubeconfig (default `.data/kube/kubeconfig`) and runs until Ctrl-C.
    """
    import sys
    import tempfile

    from userservice_operator.crd import crd_text

    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".data/kube/kubeconfig").resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    missing = missing_binaries()
    if missing:
        sys.exit(f"missing in KUBEBUILDER_ASSETS: {missing} (run `make tools`)")
    with tempfile.TemporaryDirectory(prefix="kube-") as tmp:
        cluster = KubeCluster(Path(tmp)).start()
        try:
            cluster.kubectl("apply", "--server-side", "-f", "-", input=crd_text())
            target.write_text(cluster.kubeconfig.read_text())
            print(
                f"API server {cluster.server} ready; export KUBECONFIG={target}  (Ctrl-C stops it)",
                flush=True,
            )
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            cluster.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
