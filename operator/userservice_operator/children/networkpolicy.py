"""NetworkPolicy fencing the instance's pods: the API ports (http, grpc) admit only spec.access.from, the management
port only the namespaces of spec.monitoring.namespaceSelector (Prometheus). It selects the migration Job's pods
too (by the instance, not the serving component): they listen on nothing, so they admit nothing. Kubelet probes come from the node,
which NetworkPolicy implementations admit (kube-router: an ACCEPT for traffic whose source is a local address).
Egress is left open (the database, the API server)."""

from __future__ import annotations

from typing import Any

from userservice_operator.children.common import APP_NAME, metadata, with_hash
from userservice_operator.children.context import BuildContext
from userservice_operator.spec import Manifest, UserService, to_json


def _ports(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest | None:
    """The NetworkPolicy, or None when spec.access.networkPolicy.enabled is false."""
    spec = us.spec
    if not spec.access.network_policy.enabled:
        return None
    ingress: list[dict[str, Any]] = []
    peers = to_json(spec.access.peers)
    if peers:  # an empty `from` would admit everyone: no peers means no rule, so nobody
        ingress.append({"from": peers, "ports": _ports(spec.http.port, spec.grpc.port)})
    ingress.append(
        {
            "from": [{"namespaceSelector": to_json(spec.monitoring.namespace_selector)}],
            "ports": _ports(spec.management.port),
        }
    )
    return with_hash(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(us, us.name, "server"),
            "spec": {
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": us.name}
                },
                "policyTypes": ["Ingress"],
                "ingress": ingress,
            },
        }
    )
