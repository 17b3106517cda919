"""Identities for the authenticated figures: the real kube-apiserver of tests/support/kube.py (service-account
issuer, RBAC), a ServiceAccount allowed `get` on `users.userservice.io` in one namespace, and its token minted with
the TokenRequest API for the service's audience; and the peer's superuser JWT from its own login route."""

from __future__ import annotations

import contextlib
import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from bench import stack, tools
from tests.support.kube import KubeCluster

NAMESPACE = "bench"
AUDIENCE = f"userservice.io/{NAMESPACE}/bench"


@dataclass(frozen=True)
class Identity:
    token_file: Path  # the ServiceAccount's token (mode 0600, never printed)
    service_env: dict[str, str]  # what the authenticated service needs to check it


def _secret_file(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(text + "\n")
    return path


@contextlib.contextmanager
def service_account(workdir: Path) -> Iterator[Identity]:
    """A running kube-apiserver with a reader ServiceAccount and its token; stopped on exit."""
    tools.kube_assets()
    cluster = KubeCluster(workdir / "kube-auth", controller_manager=False).start()
    try:
        api = cluster.client()
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": "reader"}})
        rbac.create_cluster_role(
            {
                "metadata": {"name": "bench-users-get"},
                "rules": [{"apiGroups": ["userservice.io"], "resources": ["users"], "verbs": ["get"]}],
            }
        )
        rbac.create_namespaced_role_binding(
            NAMESPACE,
            {
                "metadata": {"name": "reader-users-get"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NAMESPACE}],
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "bench-users-get",
                },
            },
        )
        minted = core.create_namespaced_service_account_token(
            "reader", NAMESPACE, {"spec": {"audiences": [AUDIENCE], "expirationSeconds": 3600}}
        )
        yield Identity(
            _secret_file(workdir / "sa-token", minted.status.token),
            {
                "AUTH_MODE": "kubernetes",
                "AUTH_AUDIENCE": AUDIENCE,
                "AUTH_NAMESPACE": NAMESPACE,
                # the service's own identity, allowed to create TokenReviews and SubjectAccessReviews
                "KUBECONFIG": str(cluster.kubeconfig_for("admin")),
            },
        )
    finally:
        cluster.stop()
        shutil.rmtree(workdir / "kube-auth" / "etcd", ignore_errors=True)


def peer_token(peer_url: str, workdir: Path) -> Path:
    """The peer's superuser logs in through fastapi-users' JWT login; its token, in a file."""
    form = urllib.parse.urlencode({"username": stack.PEER_ADMIN[0], "password": stack.PEER_ADMIN[1]}).encode()
    with urllib.request.urlopen(f"{peer_url}/auth/jwt/login", data=form, timeout=30) as resp:
        token = json.loads(resp.read())["access_token"]
    return _secret_file(workdir / "peer-token", token)
