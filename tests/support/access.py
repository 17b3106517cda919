"""Callers for tests of who may call, on a real kube-apiserver: namespaces, the service's ServiceAccount that may
create TokenReviews and SubjectAccessReviews and nothing else, one caller ServiceAccount per permission with a Role
granting exactly it, one granted everything (`may-all`) and one granted nothing (`may-nothing`); their tokens from
the TokenRequest API; the service's settings to check them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.kube import KubeCluster
from userservice.access.permissions import GROUP, PERMISSIONS, Permission

NAMESPACE = "usvc-access"
CALLERS = "team-a"
AUDIENCE = f"userservice.io/{NAMESPACE}/users"
CACHE_SECONDS = 1.0


def sa_name(permission: Permission) -> str:
    return f"may-{permission.verb}-{permission.resource_name.replace('/', '-')}"


def rule(permission: Permission) -> dict[str, Any]:
    return {"apiGroups": [GROUP], "resources": [permission.resource_name], "verbs": [permission.verb]}


def manifests() -> list[dict[str, Any]]:
    """The namespaces; the service's ServiceAccount with only the two reviews; one caller per permission with a
    Role granting exactly it; a caller granted everything; one granted nothing."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}} for name in (NAMESPACE, CALLERS)
    ]
    docs += [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "users", "namespace": NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "usvc-access-reviewer"},
            "rules": [
                {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                    "verbs": ["create"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "usvc-access-reviewer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "usvc-access-reviewer",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "users", "namespace": NAMESPACE}],
        },
    ]
    grants = {sa_name(p): [rule(p)] for p in set(PERMISSIONS.values())}
    grants["may-all"] = [rule(p) for p in set(PERMISSIONS.values())]
    grants["may-get-revoked"] = [rule(PERMISSIONS["GetUser"])]
    grants["may-get-deleted"] = [rule(PERMISSIONS["GetUser"])]
    for name, rules in grants.items():
        docs += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": CALLERS}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": CALLERS}],
            },
        ]
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "may-nothing", "namespace": CALLERS},
        }
    )
    return docs


def mint(cluster: KubeCluster, account: str, namespace: str = CALLERS, audience: str = AUDIENCE) -> str:
    """A ServiceAccount token from the TokenRequest API (600 s: its minimum)."""
    out = cluster.kubectl(
        "create", "token", account, "-n", namespace, f"--audience={audience}", "--duration=600s"
    )
    return out.stdout.strip()


@dataclass
class Setup:
    cluster: KubeCluster
    tokens: dict[str, str]
    kubeconfig: Path


def prepare(kube_cluster: KubeCluster, workdir: Path) -> Setup:
    """Applies manifests() (idempotent: modules may share the session's cluster), mints each caller's token and
    writes the service's kubeconfig into `workdir`."""
    kube_cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in manifests()))
    names = [sa_name(p) for p in set(PERMISSIONS.values())] + ["may-all", "may-nothing"]
    tokens = {name: mint(kube_cluster, name) for name in names}
    # The service's own credentials: a token for the API server's audience, nothing but the two reviews.
    own = kube_cluster.kubectl("create", "token", "users", "-n", NAMESPACE, "--duration=3600s").stdout.strip()
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": kube_cluster.server,
                            "certificate-authority": str(kube_cluster.ca_file),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": own}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    assert (
        kube_cluster.kubectl(
            "auth",
            "can-i",
            "get",
            "users.userservice.io",
            "-n",
            NAMESPACE,
            f"--as=system:serviceaccount:{NAMESPACE}:users",
            check=False,
        ).stdout.strip()
        == "no"
    )
    return Setup(kube_cluster, tokens, kubeconfig)


def service_env(setup: Setup) -> dict[str, str]:
    return {
        "AUTH_MODE": "kubernetes",
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_NAMESPACE": NAMESPACE,
        "AUTH_CACHE_SECONDS": str(CACHE_SECONDS),
        "KUBECONFIG": str(setup.kubeconfig),
    }
