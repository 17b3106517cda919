"""Deployment of the user service: probes on the management port, its own ServiceAccount (Kubernetes
authentication), the TLS Secret when asked, restricted security, drain-aware termination."""

from __future__ import annotations

from typing import Any

from userservice_operator.budget import pool_size
from userservice_operator.children import serviceaccount
from userservice_operator.children.common import labels, metadata, scheme, selector_labels, with_hash
from userservice_operator.children.context import BuildContext
from userservice_operator.children.env import TLS_DIR, base_env, database_env
from userservice_operator.children.security import pod_security_context, security_context
from userservice_operator.spec import Manifest, UserService

COMPONENT = "server"
CONTAINER = "userservice"
TLS_VOLUME = "tls"
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
        {"name": "MANAGEMENT_PORT", "value": str(spec.management.port)},
        {"name": "SHUTDOWN_GRACE_SECONDS", "value": str(spec.shutdown_grace_period_seconds)},
        *access_env(us),
        *database_env(us, pool_size(spec)),
        *(dict(e) for e in spec.env),
    ]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - an emptyDir, read-only root
    if spec.tls is not None:
        # The whole Secret, not subPath items: kubelet then updates the files in place on renewal.
        volumes.append(
            {"name": TLS_VOLUME, "secret": {"secretName": spec.tls.secret_name, "defaultMode": 0o440}}
        )
        mounts.append({"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": True})
    probe_common = {"timeoutSeconds": 2, "failureThreshold": 3}
    probe_get = {"port": "management", "scheme": scheme(us).upper()}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["userservice"],  # explicit: independent of the image's ENTRYPOINT/CMD
        "args": ["serve"],
        "ports": [
            {"name": "http", "containerPort": spec.http.port, "protocol": "TCP"},
            {"name": "grpc", "containerPort": spec.grpc.port, "protocol": "TCP"},
            {"name": "management", "containerPort": spec.management.port, "protocol": "TCP"},
        ],
        "env": env,
        "resources": dict(spec.resources),
        "livenessProbe": {
            "httpGet": {"path": "/healthz", **probe_get},
            "periodSeconds": 10,
            **probe_common,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", **probe_get},
            "periodSeconds": 5,
            **probe_common,
        },
        "securityContext": security_context(),
        "volumeMounts": mounts,
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
                "serviceAccountName": serviceaccount.name(us),
                # The service authenticates to the API server with this token (TokenReview, SubjectAccessReview).
                "automountServiceAccountToken": True,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": spec.termination_grace_seconds(),
                "securityContext": pod_security_context(),
                "containers": [container],
                "volumes": volumes,
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


def access_env(us: UserService) -> list[dict[str, Any]]:
    """Authentication always on (AUTH_MODE cannot be overridden: spec.env refuses it), and TLS when asked."""
    env = [
        {"name": "AUTH_MODE", "value": "kubernetes"},
        {"name": "AUTH_AUDIENCE", "value": us.audience()},
        {"name": "AUTH_NAMESPACE", "value": us.namespace},
        {"name": "SUBSCRIPTIONS_USERSERVICE", "value": us.name},
        {"name": "AUTH_CACHE_SECONDS", "value": str(us.spec.auth.cache_seconds)},
    ]
    if us.spec.tls is not None:
        env += [
            {"name": "TLS_CERT_FILE", "value": f"{TLS_DIR}/tls.crt"},
            {"name": "TLS_KEY_FILE", "value": f"{TLS_DIR}/tls.key"},
        ]
    return env
