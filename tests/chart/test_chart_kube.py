"""The chart against a real kube-apiserver (tests/support/kube.py): kubeconform with schemas generated from
that API server's own OpenAPI document (the pinned Kubernetes version, nothing downloaded), then `helm install`
and the operator, running with the chart's ServiceAccount token, reconciling a UserService made from values."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.support import (
    ALL_OPTIONS,
    CHART,
    OPERATOR_PKG,
    ROOT,
    docs,
    helm_template,
    kubeconform,
    run,
    write_kubeconform_schemas,
)
from tests.support.kube import KubeCluster, free_port, running_cluster
from tests.support.tools import project_tool

pytestmark = pytest.mark.needs_kube

# Kinds whose CRDs (Prometheus Operator's monitoring.coreos.com) are not on the test API server; their
# structure is checked in test_chart_render.py instead.
NO_SCHEMA_HERE = ("ServiceMonitor", "PrometheusRule")


def wait_for(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
            last = value
        except (AssertionError, LookupError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A private control plane: helm installs CRDs and cluster-wide RBAC, which other test modules'
    shared API server must not see."""
    with running_cluster(tmp_path_factory.mktemp("chart-kube"), controller_manager=False) as c:
        yield c


@pytest.fixture(scope="module")
def schema_dir(cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubeconform schemas of every kind this API server serves, the UserService CRD included."""
    cluster.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    cluster.wait_established("userservices.userservice.io")

    def openapi() -> dict[str, Any]:
        doc = json.loads(cluster.kubectl("get", "--raw", "/openapi/v2", timeout=120).stdout)
        assert "io.userservice.v1alpha1.UserService" in doc["definitions"]
        return dict(doc)

    out = tmp_path_factory.mktemp("schemas")
    written = write_kubeconform_schemas(wait_for(openapi, 60, "UserService in /openapi/v2"), out)
    assert "apps/v1/Deployment" in written and "userservice.io/v1alpha1/UserService" in written
    return out


@pytest.mark.parametrize("values", [None, ALL_OPTIONS], ids=["defaults", "all-options"])
def test_rendered_manifests_validate_against_the_api_server_schemas(
    values: Path | None, schema_dir: Path
) -> None:
    manifests = helm_template("--include-crds", values=values)
    results = kubeconform(manifests, schema_dir, *NO_SCHEMA_HERE)
    valid = sorted(r["kind"] for r in results if r["status"] == "statusValid")
    skipped = sorted(r["kind"] for r in results if r["status"] == "statusSkipped")
    assert "Deployment" in valid and "CustomResourceDefinition" in valid
    assert len(results) == len(docs(manifests))
    assert set(skipped) <= set(NO_SCHEMA_HERE)
    if values is ALL_OPTIONS:
        assert valid.count("UserService") == 2
        assert sorted(skipped) == sorted(NO_SCHEMA_HERE)


@pytest.mark.parametrize(
    ("folder", "image"),
    [("deploy/postgres", "postgres:18-bookworm"), ("deploy/cluster/postgres", "localhost/usvc-postgres:18")],
)
def test_dev_postgres_kustomizations_validate(schema_dir: Path, folder: str, image: str) -> None:
    """`kubectl apply -k` of the dev PostgreSQL (everywhere, and on the one-node cluster with its local image)."""
    manifests = run(project_tool("kubectl"), "kustomize", str(ROOT / folder))
    kinds = sorted(r["kind"] for r in kubeconform(manifests, schema_dir))
    assert kinds == ["Secret", "Service", "StatefulSet"]
    statefulset = next(d for d in docs(manifests) if d["kind"] == "StatefulSet")
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["image"] == image


def test_kubeconform_schemas_refuse_a_wrong_manifest(schema_dir: Path) -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {"spec": {"containers": [], "bogus": 1}}},
    }
    with pytest.raises(AssertionError, match="kubeconform found problems"):
        kubeconform(yaml.safe_dump(bad), schema_dir)


def _crd_port_defaults() -> dict[str, int]:
    crd = yaml.safe_load((OPERATOR_PKG / "crd.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return {name: spec[name]["properties"]["port"]["default"] for name in ("http", "grpc", "management")}


def assert_notes_call_the_service_the_way_it_serves(installed: str) -> None:
    """The NOTES' commands reach readiness on the management port (forwarded) and send a token of the
    UserService's default audience with every REST and gRPC call, since the default AUTH_MODE answers 401 without."""
    notes = installed[installed.index("NOTES:") :].replace("\\\n", " ")
    lines = [line.strip() for line in notes.splitlines()]
    ports = _crd_port_defaults()
    forward = next(line.split() for line in lines if line.startswith("kubectl port-forward svc/users"))
    for port in ports.values():
        assert f"{port}:{port}" in forward
    commands = [line for line in lines if line.startswith(("curl ", "grpcurl "))]
    health = [line for line in commands if "/readyz" in line or "/metrics" in line]
    assert health and all(f"localhost:{ports['management']}/" in line for line in health)
    calls = [line for line in commands if line not in health]
    assert calls and all('Bearer $TOKEN"' in line for line in calls)
    token = next(line for line in lines if line.startswith("TOKEN=$(kubectl create token"))
    assert "--audience=userservice.io/default/users" in token
    assert f"image: userservice:{yaml.safe_load((CHART / 'Chart.yaml').read_text())['appVersion']}" in notes


def _kubeconfig_with_token(cluster: KubeCluster, token: str, path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": cluster.server, "certificate-authority": str(cluster.ca_file)},
                    }
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
            }
        )
    )
    return path


def test_helm_install_then_the_operator_reconciles_a_userservice_from_values(
    cluster: KubeCluster, schema_dir: Path, tmp_path: Path
) -> None:
    release, ns, apps = "chart-it", "userservice-system", "team-apps"
    cluster.kubectl("create", "namespace", apps)
    cluster.kubectl(
        "-n",
        apps,
        "create",
        "secret",
        "generic",
        "users-db",
        "--from-literal=url=postgresql://u:p@db:5432/users",
    )
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "watchNamespaces": [apps],
                "userServices": [
                    {
                        "name": "users",
                        "namespace": apps,
                        "spec": {
                            "database": {"secretRef": {"name": "users-db", "key": "url"}},
                            "monitoring": {
                                "serviceMonitor": {"enabled": False},
                                "prometheusRule": {"enabled": False},
                            },
                        },
                    }
                ],
            }
        )
    )
    helm = [project_tool("helm"), f"--kubeconfig={cluster.kubeconfig}"]
    installed = run(
        *helm, "install", release, str(CHART), "-n", ns, "--create-namespace", "-f", str(values), timeout=180
    )
    # NOTES.txt rendered for this release.
    assert f"is installed in namespace {ns}" in installed and f"watching {apps}" in installed
    assert f"{apps}/users" in installed
    assert_notes_call_the_service_the_way_it_serves(installed)
    try:
        # The UserService from values exists, with the chart's image filled in.
        us = json.loads(cluster.kubectl("-n", apps, "get", "userservice", "users", "-o", "json").stdout)
        assert us["spec"]["image"] == "userservice:0.1.0"
        assert us["metadata"]["labels"]["app.kubernetes.io/instance"] == release
        deploy = json.loads(
            cluster.kubectl(
                "-n", ns, "get", "deployment", "chart-it-userservice-operator", "-o", "json"
            ).stdout
        )
        assert deploy["spec"]["replicas"] == 2
        assert "STATUS: deployed" in run(*helm, "status", release, "-n", ns)

        # The operator runs as the chart's ServiceAccount: the chart's RBAC is what lets it work.
        token = cluster.kubectl(
            "-n", ns, "create", "token", "chart-it-userservice-operator", "--duration=1h"
        ).stdout.strip()
        kubeconfig = _kubeconfig_with_token(cluster, token, tmp_path / "sa.kubeconfig")
        log_path = tmp_path / "operator.log"
        exe = Path(sys.executable).parent / "userservice-operator"
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"POD_NAMESPACE": ns}
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    str(exe),
                    f"--kubeconfig={kubeconfig}",
                    f"--namespace={apps}",
                    "--lease-name=chart-it-userservice-operator",
                    "--bind-address=127.0.0.1",
                    f"--health-port={free_port()}",
                    f"--metrics-port={free_port()}",
                    "--crd-poll-seconds=2",
                    "--backoff-max=5",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:

            def reconciled() -> bool:
                assert proc.poll() is None, f"operator exited:\n{log_path.read_text()[-4000:]}"
                got = cluster.kubectl("-n", apps, "get", "deployment", "users", "-o", "json", check=False)
                if got.returncode != 0:
                    return False
                child = json.loads(got.stdout)
                owners = child["metadata"].get("ownerReferences", [])
                status = json.loads(
                    cluster.kubectl("-n", apps, "get", "usvc", "users", "-o", "json").stdout
                ).get("status", {})
                return any(o["kind"] == "UserService" and o["name"] == "users" for o in owners) and bool(
                    status.get("conditions")
                )

            wait_for(reconciled, 90, "the operator reconciles the UserService from chart values")
            lease = json.loads(
                cluster.kubectl(
                    "-n", ns, "get", "lease", "chart-it-userservice-operator", "-o", "json"
                ).stdout
            )
            assert lease["spec"]["holderIdentity"]
            forbidden = [
                line for line in log_path.read_text().splitlines() if '"403"' in line or "Forbidden" in line
            ]
            assert not forbidden, "the chart's RBAC refused the operator:\n" + "\n".join(forbidden[:10])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    finally:
        run(*helm, "uninstall", release, "-n", ns, "--wait", "--timeout=60s", timeout=120)
    # Uninstall removes the release's objects; the CRD (crds/) is kept, as Helm does for CRDs.
    assert (
        cluster.kubectl(
            "-n", ns, "get", "deployment", "chart-it-userservice-operator", check=False
        ).returncode
        != 0
    )
    assert cluster.kubectl("get", "crd", "userservices.userservice.io", check=False).returncode == 0
