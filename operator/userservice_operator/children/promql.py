"""PromQL selectors and runbook links shared by the operator's PrometheusRule, the chart's alerts
(hack/docgen/chart_rules.py) and the dashboard (hack/gen-dashboard.py), so each figure means the same thing
everywhere. The chart's rules and dashboard are generated from them by `make docs`; tests compare the files."""

from __future__ import annotations

from typing import Any

# Probes and the Prometheus scrape: requests of the platform, not traffic. Left out of every rate, error and
# latency figure.
OPS_ROUTES = ("/healthz", "/readyz", "/metrics")
# Streams (SSE): the recorded duration of a request is the stream's lifetime, not a latency.
STREAM_ROUTES = ("/v1/events",)
# gRPC server streams, likewise (WatchUserEvents). gRPC health checks are not counted by the service at all.
GRPC_UNARY = 'method!~".*Watch.*"'


def _route_not(routes: tuple[str, ...]) -> str:
    return f'route!~"{"|".join(routes)}"'


HTTP_TRAFFIC = _route_not(OPS_ROUTES)
HTTP_UNARY = _route_not(OPS_ROUTES + STREAM_ROUTES)

# REST and gRPC in one selector (the SLOs): a gRPC series has no `route` label, so the route matchers keep it;
# a REST series' `method` is an HTTP verb, so GRPC_UNARY keeps it.
REQUESTS = '__name__=~"userservice_(http|grpc)_requests_total"'
DURATION_BUCKETS = '__name__=~"userservice_(http|grpc)_request_duration_seconds_bucket"'
UNARY = f"{HTTP_UNARY},{GRPC_UNARY}"
# Server errors, for every alert, SLO and dashboard panel: REST 5xx; the gRPC codes that map to a 5xx
# (google.rpc.Code) and say the server failed. UNIMPLEMENTED is the caller's error, like INVALID_ARGUMENT: the
# service answers it only for a method it does not have (a path no servicer serves, grpc.health.v1's List), that
# is a client built for another contract. RESOURCE_EXHAUSTED (a caller over its quota) is the caller's too;
# CANCELLED is the client going away.
GRPC_SERVER_ERRORS = ("UNKNOWN", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "DEADLINE_EXCEEDED")
SERVER_ERRORS = f'code=~"5..|{"|".join(GRPC_SERVER_ERRORS)}"'

# The Pods metric the HorizontalPodAutoscaler scales on (spec.autoscaling.targetRequestsPerSecond): requests
# per second per pod over REST and gRPC together, as a metrics adapter serves it. ADAPTER_METRICS_QUERY is
# prometheus-adapter's metricsQuery for it (docs/operator.md shows the whole rule; a test keeps it equal).
REQUESTS_METRIC = "userservice_requests_per_second"
ADAPTER_METRICS_QUERY = (
    'sum by (<<.GroupBy>>) (rate({__name__=~"userservice_(http|grpc)_requests_total",'
    + HTTP_TRAFFIC
    + ",<<.LabelMatchers>>}[1m]))"
)


def adapter_config() -> dict[str, Any]:
    """prometheus-adapter's configuration serving REQUESTS_METRIC: what the one-node cluster runs and what the
    chart ships for real clusters (files/prometheus-adapter-rules.yaml, written by `make docs`)."""
    return {
        "rules": [
            {
                "seriesQuery": 'userservice_http_requests_total{namespace!="",pod!=""}',
                "resources": {
                    "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
                },
                "name": {"as": REQUESTS_METRIC},
                "metricsQuery": ADAPTER_METRICS_QUERY,
            }
        ]
    }


# docs/runbooks.md has one section per alert; the chart's prometheusRule.runbookBaseUrl defaults to the same.
RUNBOOKS = "docs/runbooks.md"


def runbook_url(alert: str, base: str = RUNBOOKS) -> str:
    """The runbook section of an alert (the Markdown heading's anchor: its name in lower case)."""
    return f"{base}#{alert.lower()}"


def with_selector(selector: str, *matchers: str) -> str:
    """A label selector body: `selector` plus extra matchers (either may be empty)."""
    return ",".join(m for m in (selector, *matchers) if m)
