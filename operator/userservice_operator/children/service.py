"""ClusterIP Service with the named ports `http` and `grpc`."""

from __future__ import annotations

from userservice_operator.children.common import (
    Manifest,
    grpc_port,
    http_port,
    metadata,
    name_of,
    selector_labels,
    with_hash,
)


def build(us: Manifest) -> Manifest:
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(us, name_of(us), "server"),
            "spec": {
                "type": "ClusterIP",
                "selector": selector_labels(us),
                "ports": [
                    {"name": "http", "port": http_port(us), "targetPort": "http", "protocol": "TCP"},
                    {
                        "name": "grpc",
                        "port": grpc_port(us),
                        "targetPort": "grpc",
                        "protocol": "TCP",
                        "appProtocol": "grpc",
                    },
                ],
            },
        }
    )


def endpoints(us: Manifest) -> dict[str, str]:
    """In-cluster addresses of the service (REST URL and gRPC target)."""
    host = f"{name_of(us)}.{us['metadata']['namespace']}.svc"
    return {"http": f"http://{host}:{http_port(us)}", "grpc": f"{host}:{grpc_port(us)}"}
