"""HorizontalPodAutoscaler (autoscaling/v2): CPU, plus requests per second as a Pods metric when asked."""

from __future__ import annotations

from typing import Any

from userservice_operator.children.common import metadata, with_hash
from userservice_operator.children.context import BuildContext
from userservice_operator.children.promql import REQUESTS_METRIC
from userservice_operator.spec import Manifest, UserService


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest | None:
    """The HPA, or None when autoscaling is off or the rollout pins the replicas (first migration)."""
    autoscaling = us.spec.autoscaling
    pinned = ctx is not None and ctx.plan is not None and ctx.plan.replicas is not None
    if autoscaling is None or not autoscaling.enabled or pinned:
        return None
    metrics: list[dict[str, Any]] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                },
            },
        }
    ]
    if autoscaling.target_requests_per_second:
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": REQUESTS_METRIC},
                    "target": {
                        "type": "AverageValue",
                        "averageValue": str(autoscaling.target_requests_per_second),
                    },
                },
            }
        )
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": us.name},
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "metrics": metrics,
    }
    if autoscaling.behavior:
        hpa_spec["behavior"] = dict(autoscaling.behavior)
    return with_hash(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(us, us.name, "server"),
            "spec": hpa_spec,
        }
    )
