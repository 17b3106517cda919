"""Deployment of the user service: probes, restricted security, drain-aware termination."""

from __future__ import annotations

from typing import Any

from userservice_operator.budget import pool_size
from userservice_operator.children.common import (
    BuildContext,
    base_env,
    database_env,
    labels,
    metadata,
    pod_security_context,
    security_context,
    selector_labels,
    with_hash,
)
from userservice_operator.spec import Manifest, UserService

COMPONENT = "server"
CONTAINER = "userservice"
# The oldest Kubernetes the children are valid on: the preStop `sleep` action is on by default from 1.30.
# A zero-second sleep is valid only from 1.33, so preStopSleepSeconds 0 leaves the hook out instead.
# The chart's kubeVersion states the same (a chart test checks it).
MIN_KUBERNETES = (1, 30)


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest:
    """The Deployment for `us`.

    The plan's image overrides spec.image (the rollout is held at the previous image until its migration Job
    succeeded); its replicas override the replica count (0 while the very first migration runs). Without an
    override, `replicas` is set from spec.replicas only when autoscaling is off: otherwise the field is left
    out of the applied configuration and belongs to the HorizontalPodAutoscaler.
    """
    spec = us.spec
    plan = ctx.plan if ctx is not None else None
    image = plan.image if plan is not None else spec.image
    replicas = plan.replicas if plan is not None else None
    env: list[dict[str, Any]] = [
        *base_env(us),
        {"name": "HTTP_PORT", "value": str(spec.http.port)},
        {"name": "GRPC_PORT", "value": str(spec.grpc.port)},
        {"name": "SHUTDOWN_GRACE_SECONDS", "value": str(spec.shutdown_grace_period_seconds)},
        *database_env(us, pool_size(spec)),
        *(dict(e) for e in spec.env),
    ]
    probe_common = {"timeoutSeconds": 2, "failureThreshold": 3}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["userservice"],  # explicit: independent of the image's ENTRYPOINT/CMD
        "args": ["serve"],
        "ports": [
            {"name": "http", "containerPort": spec.http.port, "protocol": "TCP"},
            {"name": "grpc", "containerPort": spec.grpc.port, "protocol": "TCP"},
        ],
        "env": env,
        "resources": dict(spec.resources),
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
        "securityContext": security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir, read-only root
    }
    if spec.pre_stop_sleep_seconds:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": spec.pre_stop_sleep_seconds}}}
    template_meta: dict[str, Any] = {"labels": labels(us, COMPONENT, image)}
    if spec.pod.annotations:
        template_meta["annotations"] = dict(spec.pod.annotations)
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(us)},
        "revisionHistoryLimit": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "template": {
            "metadata": template_meta,
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": spec.termination_grace_seconds(),
                "securityContext": pod_security_context(),
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                **spec.pod.scheduling(),
            },
        },
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    elif not spec.autoscaled():
        deployment_spec["replicas"] = spec.replicas
    return with_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(us, us.name, COMPONENT, image),
            "spec": deployment_spec,
        }
    )
