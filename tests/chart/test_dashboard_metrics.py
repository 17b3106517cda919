"""Every query of the chart's dashboard names series somebody exports: the service, the operator (its own
metrics and the recording rules of spec.slo), or Prometheus itself (`up`). The queries are parsed with a PromQL
parser (promql-parser), so a metric name inside a `__name__=~` matcher counts as much as a plain one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import promql_parser
from prometheus_client import CollectorRegistry

from tests.chart.support import CHART
from userservice.metrics import Metrics
from userservice_operator.children.promql import REQUESTS_METRIC
from userservice_operator.children.slo import WINDOWS, record_name
from userservice_operator.metrics import OperatorMetrics

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
# Prometheus' own series per scrape target.
PROMETHEUS = {"up"}


def _names(registry: CollectorRegistry) -> set[str]:
    return {f.name + s for f in registry.collect() for s in SUFFIXES.get(f.type, ("",))}


def service_metrics() -> set[str]:
    metrics = Metrics()
    metrics.watch_pool(lambda: (1, 1, 1))
    return _names(metrics.registry)


def operator_metrics() -> set[str]:
    registry = CollectorRegistry()
    OperatorMetrics(registry)
    return _names(registry) | {record_name(sli, w) for sli in ("availability", "latency") for w in WINDOWS}


def _selected(expr: str) -> Iterator[tuple[str, str | None]]:
    """(name or name pattern, regex op) of every series selector in `expr` (Grafana variables filled in)."""
    found: list[tuple[str, str | None]] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                found.append((node.name, None))
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    found.append((m.value, str(m.op)))

    promql_parser.walk(promql_parser.parse(expr.replace("$__rate_interval", "1m")), visit)
    return iter(found)


def _dashboard_exprs() -> list[str]:
    board = json.loads((CHART / "files" / "dashboard.json").read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets") or []]


def test_every_dashboard_query_reads_exported_series() -> None:
    exported = service_metrics() | operator_metrics() | PROMETHEUS
    exprs = _dashboard_exprs()
    assert len(exprs) > 20
    seen: set[str] = set()
    for expr in exprs:
        for name, op in _selected(expr):
            matching = {m for m in exported if re.fullmatch(name, m)} if op else {name} & exported
            assert matching, f"{name!r} in {expr!r}: exported by neither the service nor the operator"
            seen |= matching
    # the SLO and autoscaling panels read the recording rules and the request counters the adapter rule reads
    assert {record_name("availability", "5m"), record_name("latency", "5m")} <= seen
    assert {"userservice_http_requests_total", "userservice_grpc_requests_total"} <= seen


def test_the_checker_refuses_a_name_nobody_exports() -> None:
    """The check above is not vacuous: kube-state-metrics' series and the adapter's served metric (which lives in
    the custom metrics API, not in Prometheus) are not found."""
    exported = service_metrics() | operator_metrics() | PROMETHEUS
    for expr in ("sum(kube_pod_container_status_restarts_total)", f"avg({REQUESTS_METRIC})"):
        assert [n for n, _ in _selected(expr) if n not in exported]
    assert "userservice_http_requests_total" in exported and "userservice_db_pool_connections" in exported
