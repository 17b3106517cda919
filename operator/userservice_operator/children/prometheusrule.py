"""PrometheusRule (monitoring.coreos.com/v1): availability, error-rate, latency, event-feed and push-delivery
alerts, and the
recording rules and burn-rate alerts of spec.slo (children/slo.py) in a group of their own.

Alerts exist only where their inputs do: every series they read comes from the ServiceMonitor's scrape, so
there is no rule without one; and a service scaled to zero replicas has no availability alert (it is down on
purpose, and `absent(up)` would fire for ever).
"""

from __future__ import annotations

from typing import Any

from userservice_operator.children import slo
from userservice_operator.children.common import metadata, with_hash
from userservice_operator.children.context import BuildContext
from userservice_operator.children.promql import HTTP_TRAFFIC, HTTP_UNARY, runbook_url, with_selector
from userservice_operator.spec import Manifest, UserService

SUBSCRIPTION_LAG_SECONDS = 300


def _alert(
    runbooks: str,
    name: str,
    expr: str,
    for_: str,
    severity: str,
    instance: str,
    summary: str,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    rule = {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **(labels or {})},
        "annotations": {"instance": instance, "summary": summary, "runbook_url": runbook_url(name, runbooks)},
    }
    if not for_:  # burn-rate alerts: their short window is what keeps them from flapping
        del rule["for"]
    return rule


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest | None:
    """The PrometheusRule, or None when disabled or when nothing scrapes the service."""
    monitoring = us.spec.monitoring
    if not monitoring.prometheus_rule.enabled or not monitoring.service_monitor.enabled:
        return None
    name, namespace = us.name, us.namespace
    meta = metadata(us, name, "monitoring")
    meta["labels"] = {**monitoring.rule_labels(), **meta["labels"]}
    sel = f'namespace="{namespace}",service="{name}"'
    instance = f"{namespace}/{name}"
    runbooks = (ctx or BuildContext()).runbooks
    traffic = with_selector(sel, HTTP_TRAFFIC)
    rules = []
    if us.spec.autoscaled() or us.spec.replicas > 0:
        rules.append(
            _alert(
                runbooks,
                "UserServiceDown",
                f"sum(up{{{sel}}}) == 0 or absent(up{{{sel}}})",
                "5m",
                "critical",
                instance,
                f"No pod of UserService {namespace}/{name} is scraped as up.",
            )
        )
    rules += [
        _alert(
            runbooks,
            "UserServiceHighErrorRate",
            f'sum(rate(userservice_http_requests_total{{{traffic},code=~"5.."}}[5m]))'
            f" / sum(rate(userservice_http_requests_total{{{traffic}}}[5m])) > 0.05",
            "10m",
            "warning",
            instance,
            f"Over 5% of REST requests to {namespace}/{name} (probes and scrapes excluded) fail with 5xx.",
        ),
        _alert(
            runbooks,
            "UserServiceHighLatency",
            "histogram_quantile(0.99, sum by (le) (rate("
            f"userservice_http_request_duration_seconds_bucket{{{with_selector(sel, HTTP_UNARY)}}}[5m]))) > 0.5",
            "10m",
            "warning",
            instance,
            f"p99 latency of REST requests to {namespace}/{name} (streams excluded) is above 500 ms.",
        ),
        _alert(
            runbooks,
            "UserServiceEventFeedStalled",
            f"max(userservice_event_feed_stall_seconds{{{sel}}}) > 30",
            "1m",
            "warning",
            instance,
            f"A transaction open for over 30 s in the database of {namespace}/{name} delays every change event.",
        ),
        # A failing sink and a slow one look the same here: the oldest undelivered event grows old.
        _alert(
            runbooks,
            "UserServiceSubscriptionLagging",
            f"max by (subscription) (userservice_subscription_lag_seconds{{{sel}}}) > {SUBSCRIPTION_LAG_SECONDS}",
            "10m",
            "warning",
            instance,
            f"UserEventSubscription {{{{ $labels.subscription }}}} of {namespace}/{name} has left an event"
            f" undelivered for over {SUBSCRIPTION_LAG_SECONDS // 60} minutes.",
        ),
    ]
    groups = [{"name": f"userservice.{namespace}.{name}", "rules": rules}]
    slo_rules = slo.rules(
        us,
        lambda alert, expr, severity, summary, labels: _alert(
            runbooks, alert, expr, "", severity, instance, summary, labels
        ),
    )
    if slo_rules:
        groups.append({"name": f"userservice-slo.{namespace}.{name}", "rules": slo_rules})
    return with_hash(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": meta,
            "spec": {"groups": groups},
        }
    )
