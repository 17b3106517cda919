"""spec.database against the real API server: the CRD's rules on the connection budget and the two database
references, and a CloudNativePG cluster's Secret and Services, in the shape CloudNativePG creates them, used by
the operator as they come."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from tests.integration.operator.conftest import wait_for
from tests.integration.operator.helpers import (
    PLURAL,
    apply,
    condition,
    container,
    get,
    reconciled,
    userservice,
)
from tests.support.kube import KubeCluster

pytestmark = pytest.mark.needs_kube

CLUSTER = "pg"


def dry_run(cluster: KubeCluster, body: dict[str, Any]) -> tuple[int, str]:
    result = cluster.kubectl(
        "-n", "default", "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    return result.returncode, result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"database": {"secretRef": {"name": "db"}, "cloudNativePG": {"clusterName": "pg"}}},
            "spec.database needs exactly one of secretRef and cloudNativePG",
        ),
        ({"database": {}}, "spec.database needs exactly one of secretRef and cloudNativePG"),
        (
            {
                "autoscaling": {"maxReplicas": 10},
                "database": {"secretRef": {"name": "db"}, "maxConnections": 60},
            },
            "spec.database.maxConnections is too small",
        ),
        (
            {"replicas": 4, "database": {"secretRef": {"name": "db"}, "maxConnections": 24}},
            "spec.database.maxConnections is too small",
        ),
        (
            {
                "database": {"cloudNativePG": {"clusterName": "pg"}},
                "env": [{"name": "PGPASSWORD", "value": "x"}],
            },
            "spec.env must not set DATABASE_READ_URL, PGUSER, PGPASSWORD",
        ),
        (
            {
                "database": {"secretRef": {"name": "db"}, "maxConnections": 100},
                "env": [{"name": "DB_POOL_MAX", "value": "50"}],
            },
            "nor DB_POOL_MAX or DB_READ_POOL_MAX",
        ),
    ],
)
def test_api_refuses_bad_database_specs(
    operator_cluster: KubeCluster, spec: dict[str, Any], message: str
) -> None:
    code, stderr = dry_run(operator_cluster, userservice("bad", **spec))
    assert code != 0
    assert message in stderr, stderr


def test_api_accepts_the_smallest_feasible_budget_and_each_reference(operator_cluster: KubeCluster) -> None:
    for spec in (
        {"autoscaling": {"maxReplicas": 10}, "database": {"secretRef": {"name": "db"}, "maxConnections": 61}},
        {"database": {"cloudNativePG": {"clusterName": "pg"}, "maxConnections": 13}},
        # without the features, the variables are the user's to set
        {
            "env": [
                {"name": "DB_POOL_MAX", "value": "5"},
                {"name": "DATABASE_READ_URL", "value": "postgresql://r/db"},
            ]
        },
    ):
        code, stderr = dry_run(operator_cluster, userservice("good", **spec))
        assert code == 0, stderr


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def cloudnativepg_objects(namespace: str) -> list[dict[str, Any]]:
    """The `-app` Secret and the `-rw`/`-ro`/`-r` Services CloudNativePG makes for a Cluster named `pg` with
    its default `app` database and owner (docs: "Connecting from an application", "Service management")."""
    host = f"{CLUSTER}-rw"
    password = "TnQcbBH1v3xqJ9JzT6wVz8i2EYfBvS3sT6nsqXwHMo5pmkG2vTRzvbLw1tN9hAfo"
    uri = f"postgresql://app:{password}@{host}.{namespace}:5432/app"
    cluster_labels = {"cnpg.io/cluster": CLUSTER}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/basic-auth",
        "metadata": {"name": f"{CLUSTER}-app", "labels": {**cluster_labels, "cnpg.io/reload": "true"}},
        "data": {
            "username": _b64("app"),
            "password": _b64(password),
            "host": _b64(host),
            "port": _b64("5432"),
            "dbname": _b64("app"),
            "uri": _b64(uri),
            "jdbc-uri": _b64(f"jdbc:postgresql://{host}.{namespace}:5432/app?password={password}&user=app"),
            "pgpass": _b64(f"{host}:5432:app:app:{password}\n"),
            "fqdn-uri": _b64(f"postgresql://app:{password}@{host}.{namespace}.svc.cluster.local:5432/app"),
            "fqdn-jdbc-uri": _b64(
                f"jdbc:postgresql://{host}.{namespace}.svc.cluster.local:5432/app?password={password}&user=app"
            ),
        },
    }

    def service(suffix: str, selector: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{CLUSTER}-{suffix}", "labels": cluster_labels},
            "spec": {
                "type": "ClusterIP",
                "ports": [{"name": "postgres", "port": 5432, "protocol": "TCP", "targetPort": 5432}],
                "selector": {**cluster_labels, **selector},
            },
        }

    return [
        secret,
        service("rw", {"cnpg.io/instanceRole": "primary"}),
        service("ro", {"cnpg.io/instanceRole": "replica"}),
        service("r", {"cnpg.io/podRole": "instance"}),
    ]


def test_a_cloudnativepg_cluster_is_used_as_it_comes(
    operator_cluster: KubeCluster, it_namespace: str
) -> None:
    ns = it_namespace
    apply(
        operator_cluster,
        ns,
        userservice(
            "cnpg",
            autoscaling={"minReplicas": 2, "maxReplicas": 4},
            database={"cloudNativePG": {"clusterName": CLUSTER}, "maxConnections": 50},
        ),
    )
    # Before CloudNativePG made the cluster: a condition naming what is missing, and no pods. The first
    # UserService the shared operator sees may wait for its namespace watch to start (kopf follows `it-*`
    # namespaces as they appear): once, 30 s was not enough on a loaded machine.
    us = wait_for(lambda: reconciled(operator_cluster, ns, "cnpg"), 90)
    degraded = condition(us, "Degraded")
    assert (degraded["reason"], f"'{CLUSTER}-app'" in degraded["message"]) == ("SecretNotFound", True)
    assert "spec.database.cloudNativePG" in degraded["message"]
    assert get(operator_cluster, ns, "deployment", "cnpg") is None

    apply(operator_cluster, ns, *cloudnativepg_objects(ns))
    dep = wait_for(lambda: get(operator_cluster, ns, "deployment", "cnpg"), 30, what="deployment")
    env = {e["name"]: e for e in container(dep)["env"]}
    assert env["DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": f"{CLUSTER}-app", "key": "uri"}}
    for name, key in (("PGUSER", "username"), ("PGPASSWORD", "password"), ("PGDATABASE", "dbname")):
        assert env[name]["valueFrom"] == {"secretKeyRef": {"name": f"{CLUSTER}-app", "key": key}}
    assert env["DATABASE_READ_URL"]["value"] == f"postgresql://{CLUSTER}-ro.{ns}:5432"
    # 2 x 4 pods (old ones draining beside new ones), each with its own connection, and the Job's: (50 - 1) // 8 - 1
    assert env["DB_POOL_MAX"]["value"] == env["DB_READ_POOL_MAX"]["value"] == "5"
    # No secret value is copied anywhere into the spec or the Deployment.
    password = base64.b64decode(cloudnativepg_objects(ns)[0]["data"]["password"]).decode()
    assert password not in str(dep) and password not in str(get(operator_cluster, ns, PLURAL, "cnpg"))
    wait_for(
        lambda: condition(get(operator_cluster, ns, PLURAL, "cnpg"), "Degraded")["status"] == "False", 30
    )
