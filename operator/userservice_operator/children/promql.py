"""PromQL selectors and runbook links shared by the operator's PrometheusRule, the chart's alerts and the dashboard generator
(hack/gen-dashboard.py), so each figure means the same thing everywhere. A test checks the chart uses them."""

from __future__ import annotations

# Streams (SSE): the recorded duration of a request is the stream's lifetime, not a latency.
STREAM_ROUTES = ("/v1/events",)
# gRPC server streams, likewise (WatchUserEvents).
GRPC_UNARY = 'method!~".*Watch.*"'


def _route_not(routes: tuple[str, ...]) -> str:
    return f'route!~"{"|".join(routes)}"'


HTTP_UNARY = _route_not(STREAM_ROUTES)


# docs/runbooks.md has one section per alert; the chart's prometheusRule.runbookBaseUrl defaults to the same.
RUNBOOKS = "docs/runbooks.md"


def runbook_url(alert: str, base: str = RUNBOOKS) -> str:
    """The runbook section of an alert (the Markdown heading's anchor: its name in lower case)."""
    return f"{base}#{alert.lower()}"


def with_selector(selector: str, *matchers: str) -> str:
    """A label selector body: `selector` plus extra matchers (either may be empty)."""
    return ",".join(m for m in (selector, *matchers) if m)
