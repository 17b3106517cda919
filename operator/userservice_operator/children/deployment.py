"""Deployment of the user service: probes, restricted security, drain-aware termination."""

from __future__ import annotations

from typing import Any

from userservice_operator.children.common import (
    Manifest,
    autoscaling_enabled,
    base_env,
    grpc_port,
    http_port,
    labels,
    metadata,
    name_of,
    pod_scheduling,
    pod_security_context,
    security_context,
    selector_labels,
    spec_of,
    with_hash,
)

COMPONENT = "server"
CONTAINER = "userservice"


def termination_grace_seconds(us: Manifest) -> int:
    spec = spec_of(us)
    return int(spec.get("shutdownGracePeriodSeconds", 20)) + int(spec.get("preStopSleepSeconds", 5)) + 5


def build(us: Manifest, *, image: str | None = None, replicas: int | None = None) -> Manifest:
    """The Deployment for `us`.

    `image` overrides spec.image (the rollout is held at the previous image until its migration Job
    succeeded); `replicas` overrides the replica count (0 while the very first migration runs). Without an
    override, `replicas` is set from spec.replicas only when autoscaling is off: otherwise the field is left
    out of the applied configuration and belongs to the HorizontalPodAutoscaler.
    """
    spec = spec_of(us)
    image = image or str(spec["image"])
    env: list[dict[str, Any]] = [
        *base_env(us),
        {"name": "HTTP_PORT", "value": str(http_port(us))},
        {"name": "GRPC_PORT", "value": str(grpc_port(us))},
        {"name": "SHUTDOWN_GRACE_SECONDS", "value": str(int(spec.get("shutdownGracePeriodSeconds", 20)))},
        *(spec.get("env") or []),
    ]
    probe_common = {"timeoutSeconds": 2, "failureThreshold": 3}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": spec.get("imagePullPolicy", "IfNotPresent"),
        "command": ["userservice"],  # explicit: independent of the image's ENTRYPOINT/CMD
        "args": ["serve"],
        "ports": [
            {"name": "http", "containerPort": http_port(us), "protocol": "TCP"},
            {"name": "grpc", "containerPort": grpc_port(us), "protocol": "TCP"},
        ],
        "env": env,
        "resources": spec.get("resources") or {},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            **probe_common,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            **probe_common,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": int(spec.get("preStopSleepSeconds", 5))}}},
        "securityContext": security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir, read-only root
    }
    pod = spec.get("pod") or {}
    template_meta: dict[str, Any] = {"labels": labels(us, COMPONENT, image)}
    if pod.get("annotations"):
        template_meta["annotations"] = dict(pod["annotations"])
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(us)},
        "revisionHistoryLimit": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "template": {
            "metadata": template_meta,
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": termination_grace_seconds(us),
                "securityContext": pod_security_context(),
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                **pod_scheduling(us),
            },
        },
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    elif not autoscaling_enabled(us):
        deployment_spec["replicas"] = int(spec.get("replicas", 2))
    return with_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(us, name_of(us), COMPONENT, image),
            "spec": deployment_spec,
        }
    )
