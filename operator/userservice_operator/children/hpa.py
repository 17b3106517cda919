"""HorizontalPodAutoscaler (autoscaling/v2): CPU, plus requests per second as a Pods metric when asked."""

from __future__ import annotations

from typing import Any

from userservice_operator.children.common import Manifest, metadata, name_of, spec_of, with_hash

# Pods metric served by a metrics adapter (e.g. prometheus-adapter) as the per-pod rate of the
# service's `userservice_http_requests_total` counter.
REQUESTS_METRIC = "userservice_http_requests_per_second"


def build(us: Manifest) -> Manifest | None:
    """The HPA, or None when autoscaling is off."""
    autoscaling = spec_of(us).get("autoscaling")
    if not autoscaling or not autoscaling.get("enabled", True):
        return None
    metrics: list[dict[str, Any]] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": int(autoscaling.get("targetCPUUtilizationPercentage", 80)),
                },
            },
        }
    ]
    rps = autoscaling.get("targetRequestsPerSecond")
    if rps:
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": REQUESTS_METRIC},
                    "target": {"type": "AverageValue", "averageValue": str(int(rps))},
                },
            }
        )
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name_of(us)},
        "minReplicas": int(autoscaling.get("minReplicas", 2)),
        "maxReplicas": int(autoscaling["maxReplicas"]),
        "metrics": metrics,
    }
    if autoscaling.get("behavior"):
        hpa_spec["behavior"] = autoscaling["behavior"]
    return with_hash(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(us, name_of(us), "server"),
            "spec": hpa_spec,
        }
    )
