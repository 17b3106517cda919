"""PromQL selectors shared by the operator's PrometheusRule, the chart's alerts and the dashboard generator
(hack/gen-dashboard.py), so each figure means the same thing everywhere. A test checks the chart uses them."""

from __future__ import annotations

# Streams (SSE): the recorded duration of a request is the stream's lifetime, not a latency.
STREAM_ROUTES = ("/v1/events",)
# gRPC server streams, likewise (WatchUserEvents).
GRPC_UNARY = 'method!~".*Watch.*"'


def _route_not(routes: tuple[str, ...]) -> str:
    return f'route!~"{"|".join(routes)}"'


HTTP_UNARY = _route_not(STREAM_ROUTES)


def with_selector(selector: str, *matchers: str) -> str:
    """A label selector body: `selector` plus extra matchers (either may be empty)."""
    return ",".join(m for m in (selector, *matchers) if m)
