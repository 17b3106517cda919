"""PrometheusRule (monitoring.coreos.com/v1): availability, error-rate and latency alerts."""

from __future__ import annotations

from userservice_operator.children.common import RolloutPlan, metadata, with_hash
from userservice_operator.children.promql import HTTP_UNARY, with_selector
from userservice_operator.spec import Manifest, UserService


def build(us: UserService, plan: RolloutPlan | None = None) -> Manifest | None:
    """The PrometheusRule, or None when disabled."""
    if not us.spec.monitoring.prometheus_rule.enabled:
        return None
    name, namespace = us.name, us.namespace
    meta = metadata(us, name, "monitoring")
    meta["labels"] = {**us.spec.monitoring.rule_labels(), **meta["labels"]}
    sel = f'namespace="{namespace}",service="{name}"'
    annotations_common = {"instance": f"{namespace}/{name}"}
    return with_hash(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": meta,
            "spec": {
                "groups": [
                    {
                        "name": f"userservice.{namespace}.{name}",
                        "rules": [
                            {
                                "alert": "UserServiceDown",
                                "expr": f"sum(up{{{sel}}}) == 0 or absent(up{{{sel}}})",
                                "for": "5m",
                                "labels": {"severity": "critical"},
                                "annotations": {
                                    **annotations_common,
                                    "summary": f"No pod of UserService {namespace}/{name} is scraped as up.",
                                },
                            },
                            {
                                "alert": "UserServiceHighErrorRate",
                                "expr": (
                                    f'sum(rate(userservice_http_requests_total{{{sel},code=~"5.."}}[5m]))'
                                    f" / sum(rate(userservice_http_requests_total{{{sel}}}[5m])) > 0.05"
                                ),
                                "for": "10m",
                                "labels": {"severity": "warning"},
                                "annotations": {
                                    **annotations_common,
                                    "summary": f"Over 5% of requests to {namespace}/{name} fail with 5xx.",
                                },
                            },
                            {
                                "alert": "UserServiceHighLatency",
                                "expr": (
                                    "histogram_quantile(0.99, sum by (le) (rate("
                                    f"userservice_http_request_duration_seconds_bucket{{{with_selector(sel, HTTP_UNARY)}}}[5m]))) > 0.5"
                                ),
                                "for": "10m",
                                "labels": {"severity": "warning"},
                                "annotations": {
                                    **annotations_common,
                                    "summary": f"p99 latency of REST requests to {namespace}/{name} (streams excluded) is above 500 ms.",
                                },
                            },
                        ],
                    }
                ]
            },
        }
    )
