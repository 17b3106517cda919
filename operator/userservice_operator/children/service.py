"""ClusterIP Service with the named ports `http`, `grpc` and `management`."""

from __future__ import annotations

from userservice_operator.children.common import metadata, scheme, selector_labels, with_hash
from userservice_operator.children.context import BuildContext
from userservice_operator.spec import Manifest, UserService


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest:
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(us, us.name, "server"),
            "spec": {
                "type": "ClusterIP",
                "selector": selector_labels(us),
                "ports": [
                    {"name": "http", "port": us.spec.http.port, "targetPort": "http", "protocol": "TCP"},
                    {
                        "name": "grpc",
                        "port": us.spec.grpc.port,
                        "targetPort": "grpc",
                        "protocol": "TCP",
                        "appProtocol": "grpc",
                    },
                    {
                        "name": "management",
                        "port": us.spec.management.port,
                        "targetPort": "management",
                        "protocol": "TCP",
                    },
                ],
            },
        }
    )


def endpoints(us: UserService) -> dict[str, str]:
    """In-cluster addresses of the service (REST URL and gRPC target)."""
    host = f"{us.name}.{us.namespace}.svc"
    return {"http": f"{scheme(us)}://{host}:{us.spec.http.port}", "grpc": f"{host}:{us.spec.grpc.port}"}
