#!/usr/bin/env python3
"""Writes charts/userservice-operator/files/dashboard.json, the Grafana dashboard the chart ships, with
grafana-foundation-sdk (the Grafana 11 dashboard schema; the builders lay the panels out on the grid).

The JSON is committed; a chart test fails when it differs from what this script writes, and another that a
query names a metric nobody exports. Run: make docs (it imports the PromQL selectors of the operator package).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from userservice_operator.children.promql import (
    ADAPTER_METRICS_QUERY,
    GRPC_UNARY,
    HTTP_TRAFFIC,
    HTTP_UNARY,
    SERVER_ERRORS,
    with_selector,
)
from userservice_operator.children.slo import WINDOWS, record_name

OUT = Path(__file__).resolve().parent.parent / "charts/userservice-operator/files/dashboard.json"
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'namespace=~"$namespace",service=~"$service"'
# Probes and scrapes are not traffic; latency figures also leave streams out (their duration is the stream's
# lifetime).
SEL_HTTP = with_selector(SEL, HTTP_TRAFFIC)
SEL_HTTP_UNARY = with_selector(SEL, HTTP_UNARY)
SEL_GRPC_UNARY = with_selector(SEL, GRPC_UNARY)
# The operator's scrape jobs, found from its own metric: whatever the release or fullnameOverride is called.
OP = 'job=~"$operator_job"'
RATE = "[$__rate_interval]"
Steps = list[tuple[str, float | None]]


def query(expr: str, legend: str = "") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).range().datasource(DS)


def _thresholds(steps: Steps) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(color=c, value=v) for c, v in steps])
    )


def series(
    title: str,
    targets: list[prometheus.Dataquery],
    unit: str,
    description: str,
    span: int = 8,
    stack: bool = False,
    thresholds: Steps | None = None,
) -> timeseries.Panel:
    for i, t in enumerate(targets):
        t.ref_id(chr(ord("A") + i))
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .targets(targets)
        .unit(unit)
        .min(0)
        .span(span)
        .height(8)
        .line_width(1)
        .fill_opacity(15 if stack else 5)
        .show_points(cm.VisibilityMode.NEVER)
        .stacking(
            cb.StackingConfig().mode(cm.StackingMode.NORMAL if stack else cm.StackingMode.NONE).group("A")
        )
        .thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(
                cm.GraphThresholdsStyleMode.LINE if thresholds else cm.GraphThresholdsStyleMode.OFF
            )
        )
        .thresholds(_thresholds(thresholds or [("green", None)]))
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )


def single(title: str, expr: str, unit: str, description: str, steps: Steps, span: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .targets([query(expr).ref_id("A")])
        .unit(unit)
        .span(span)
        .height(5)
        .thresholds(_thresholds(steps))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.AREA)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def percentiles(
    metric: str, selector: str, quantiles: tuple[str, ...], by: str = "le"
) -> list[prometheus.Dataquery]:
    return [
        query(
            f"histogram_quantile({q}, sum by ({by}) (rate({metric}{{{selector}}}{RATE})))",
            f"p{int(float(q) * 100)}",
        )
        for q in quantiles
    ]


def variable(name: str, label: str, definition: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(definition)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .current(dm.VariableOption(text="All", value="$__all", selected=True))
    )


def build() -> db.Dashboard:
    http5xx = f'sum(rate(userservice_http_requests_total{{{SEL_HTTP},code=~"5.."}}{RATE}))'
    http_all = f"sum(rate(userservice_http_requests_total{{{SEL_HTTP}}}{RATE}))"
    grpc_err = f"sum(rate(userservice_grpc_requests_total{{{SEL},{SERVER_ERRORS}}}{RATE}))"
    grpc_all = f"sum(rate(userservice_grpc_requests_total{{{SEL}}}{RATE}))"
    slo_sel = 'namespace=~"$namespace",service=~"$service"'
    # The HPA's request-rate metric as prometheus-adapter computes it (ADAPTER_METRICS_QUERY), per pod.
    per_pod = ADAPTER_METRICS_QUERY.replace("<<.GroupBy>>", "namespace, service, pod").replace(
        "<<.LabelMatchers>>", SEL
    )
    d = (
        db.Dashboard("userservice")
        .uid("userservice-overview")
        .description(
            "User service instances (REST, gRPC, SLOs, autoscaling, database, events) and the operator."
        )
        .tags(["userservice", "operator"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(variable("namespace", "Namespace", "label_values(userservice_ready, namespace)"))
        .with_variable(
            variable(
                "service", "UserService", 'label_values(userservice_ready{namespace=~"$namespace"}, service)'
            )
        )
        .with_variable(variable("operator_job", "Operator", "label_values(userservice_operator_leader, job)"))
    )

    d.with_row(db.Row("Overview"))
    d.with_panel(
        single(
            "Requests / s (REST + gRPC)",
            f"{http_all} + {grpc_all}",
            "reqps",
            "All requests served.",
            [("blue", None)],
        )
    )
    d.with_panel(
        single(
            "Server errors",
            f"({http5xx} + {grpc_err}) / clamp_min({http_all} + {grpc_all}, 1e-9)",
            "percentunit",
            "Share of requests answered 5xx (REST) or a server-side gRPC status (the availability SLO's errors).",
            [("green", None), ("orange", 0.01), ("red", 0.05)],
        )
    )
    d.with_panel(
        single(
            "p99 latency (REST)",
            f"histogram_quantile(0.99, sum by (le) (rate(userservice_http_request_duration_seconds_bucket{{{SEL_HTTP_UNARY}}}{RATE})))",
            "s",
            "99th percentile of REST request latency (streams excluded).",
            [("green", None), ("orange", 0.25), ("red", 0.5)],
        )
    )
    d.with_panel(
        single(
            "Ready replicas",
            f"sum(userservice_ready{{{SEL}}})",
            "none",
            "Pods reporting ready (/readyz) among those scraped.",
            [("red", None), ("orange", 1), ("green", 2)],
        )
    )

    d.with_row(db.Row("Service level objectives (spec.slo)"))
    for sli, what in (
        ("availability", "server errors"),
        ("latency", "unary requests slower than the threshold"),
    ):
        d.with_panel(
            series(
                f"{sli.capitalize()}: bad request ratio by window",
                [
                    query(
                        f"max by (namespace, service) ({record_name(sli, w)}{{{slo_sel}}})",
                        f"{{{{service}}}} {w}",
                    )
                    for w in ("5m", "1h", "6h", "3d")
                ],
                "percentunit",
                f"The recording rules of spec.slo: share of {what}, over the windows the burn-rate alerts read "
                f"({', '.join(WINDOWS)}). Multiply the objective's budget by 14.4 (1h) or 6 (6h) for the page line.",
                span=12,
            )
        )

    d.with_row(db.Row("Autoscaling"))
    d.with_panel(
        series(
            "Requests / s per pod (the HPA's metric)",
            [query(per_pod, "{{service}} {{pod}}")],
            "reqps",
            "userservice_requests_per_second as prometheus-adapter serves it to the HorizontalPodAutoscaler: REST "
            "and gRPC together, probes and scrapes excluded. The HPA adds pods while the average is above "
            "spec.autoscaling.targetRequestsPerSecond.",
            span=12,
        )
    )
    d.with_panel(
        series(
            "Ready pods per UserService",
            [
                query(
                    f"sum by (namespace, service) (userservice_ready{{{SEL}}})",
                    "{{namespace}}/{{service}} ready",
                ),
                query(
                    f"count by (namespace, service) (up{{{SEL}}} == 1)", "{{namespace}}/{{service}} scraped"
                ),
            ],
            "none",
            "Pods reporting ready, and pods Prometheus reaches: the autoscaler's decisions as they land.",
            span=12,
        )
    )

    d.with_row(db.Row("Traffic"))
    d.with_panel(
        series(
            "REST requests / s by route",
            [
                query(
                    f"sum by (method, route) (rate(userservice_http_requests_total{{{SEL_HTTP}}}{RATE}))",
                    "{{method}} {{route}}",
                )
            ],
            "reqps",
            "REST request rate per route template.",
            span=12,
            stack=True,
        )
    )
    d.with_panel(
        series(
            "gRPC calls / s by method",
            [query(f"sum by (method) (rate(userservice_grpc_requests_total{{{SEL}}}{RATE}))", "{{method}}")],
            "reqps",
            "gRPC call rate per method.",
            span=12,
            stack=True,
        )
    )

    d.with_row(db.Row("Errors"))
    d.with_panel(
        series(
            "REST responses / s by status",
            [
                query(
                    f'sum by (code) (rate(userservice_http_requests_total{{{SEL_HTTP},code!~"2.."}}{RATE}))',
                    "{{code}}",
                )
            ],
            "reqps",
            "Non-2xx REST responses: 4xx are client mistakes, 5xx are ours.",
            stack=True,
        )
    )
    d.with_panel(
        series(
            "gRPC non-OK / s by code",
            [
                query(
                    f'sum by (code) (rate(userservice_grpc_requests_total{{{SEL},code!="OK"}}{RATE}))',
                    "{{code}}",
                )
            ],
            "reqps",
            "gRPC calls that ended with a status other than OK.",
            stack=True,
        )
    )
    d.with_panel(
        series(
            "Server error ratio",
            [
                query(f"{http5xx} / clamp_min({http_all}, 1e-9)", "REST 5xx"),
                query(f"{grpc_err} / clamp_min({grpc_all}, 1e-9)", "gRPC server errors"),
            ],
            "percentunit",
            "Share of requests failing on the server side. The alert fires above 5% for 10 minutes.",
            thresholds=[("green", None), ("red", 0.05)],
        )
    )

    d.with_row(db.Row("Latency"))
    quantiles = ("0.5", "0.9", "0.99")
    d.with_panel(
        series(
            "REST latency percentiles",
            percentiles("userservice_http_request_duration_seconds_bucket", SEL_HTTP_UNARY, quantiles),
            "s",
            "REST latency p50 / p90 / p99 over all routes.",
            thresholds=[("green", None), ("red", 0.5)],
        )
    )
    d.with_panel(
        series(
            "gRPC latency percentiles (unary)",
            percentiles("userservice_grpc_request_duration_seconds_bucket", SEL_GRPC_UNARY, quantiles),
            "s",
            "gRPC unary call latency p50 / p90 / p99 (streams excluded: they last as long as the client).",
            thresholds=[("green", None), ("red", 0.5)],
        )
    )
    d.with_panel(
        series(
            "p99 latency by REST route",
            [
                query(
                    "histogram_quantile(0.99, sum by (le, method, route) (rate("
                    f"userservice_http_request_duration_seconds_bucket{{{SEL_HTTP_UNARY}}}{RATE})))",
                    "{{method}} {{route}}",
                )
            ],
            "s",
            "Which route is slow.",
            thresholds=[("green", None), ("red", 0.5)],
        )
    )

    d.with_row(db.Row("Database and events"))
    d.with_panel(
        series(
            "DB pool connections",
            [
                query(f'sum(userservice_db_pool_connections{{{SEL},state="in_use"}})', "in use"),
                query(f'sum(userservice_db_pool_connections{{{SEL},state="idle"}})', "idle"),
                query(f"sum(userservice_db_pool_max_connections{{{SEL}}})", "max"),
            ],
            "none",
            "PostgreSQL connections of all pods' pools. In use near max means requests queue for a connection.",
        )
    )
    d.with_panel(
        series(
            "Password hashing latency",
            percentiles("userservice_password_hash_duration_seconds_bucket", SEL, ("0.5", "0.99")),
            "s",
            "argon2id hash/verify time: CPU-bound, grows when pods are CPU-throttled.",
        )
    )
    d.with_panel(
        series(
            "User changes and events / s",
            [
                query(
                    f"sum by (operation) (rate(userservice_user_changes_total{{{SEL}}}{RATE}))",
                    "{{operation}}",
                ),
                query(f"sum(rate(userservice_events_appended_total{{{SEL}}}{RATE}))", "events appended"),
            ],
            "ops",
            "Creates, updates and deletes, and the change events written to the outbox.",
        )
    )
    d.with_panel(
        series(
            "Event watchers",
            [query(f"sum by (transport) (userservice_event_watchers{{{SEL}}})", "{{transport}}")],
            "none",
            "Connected WatchUserEvents streams (grpc) and /v1/events clients (sse).",
            stack=True,
        )
    )

    d.with_row(db.Row("Push delivery (UserEventSubscriptions)"))
    d.with_panel(
        series(
            "Deliveries / s",
            [
                query(
                    f"sum by (subscription, outcome) (rate(userservice_subscription_deliveries_total{{{SEL}}}{RATE}))",
                    "{{subscription}} {{outcome}}",
                )
            ],
            "ops",
            "POSTs to each subscription's sink by outcome: delivered (2xx), throttled (429/503), rejected, "
            "unreachable, refused (the sink guard), no_signing_key.",
        )
    )
    d.with_panel(
        series(
            "Commit to 2xx latency",
            percentiles(
                "userservice_subscription_delivery_latency_seconds_bucket",
                SEL,
                ("0.5", "0.99"),
                "subscription, le",
            ),
            "s",
            "From the change's transaction to its sink's 2xx, retries included, per subscription.",
        )
    )
    d.with_panel(
        series(
            "Lag",
            [
                query(
                    f"max by (subscription) (userservice_subscription_lag_seconds{{{SEL}}})",
                    "{{subscription}} seconds",
                ),
                query(
                    f"max by (subscription) (userservice_subscription_lag_events{{{SEL}}})",
                    "{{subscription}} events",
                ),
            ],
            "none",
            "Age of the oldest undelivered event and how many wait, per subscription (reported by the pod "
            "delivering it). UserServiceSubscriptionLagging fires past 5 minutes for 10 minutes.",
            thresholds=[("green", None), ("red", 300)],
        )
    )

    d.with_row(db.Row("Operator"))
    d.with_panel(
        series(
            "Reconciles / s by result",
            [
                query(
                    f"sum by (result) (rate(userservice_operator_reconciles_total{{{OP}}}{RATE}))",
                    "{{result}}",
                )
            ],
            "ops",
            "Reconcile passes: success, retry (transient), error (the alert fires when errors persist).",
            span=6,
            stack=True,
        )
    )
    d.with_panel(
        series(
            "Reconcile duration",
            percentiles("userservice_operator_reconcile_duration_seconds_bucket", OP, ("0.5", "0.99")),
            "s",
            "Time of one reconcile pass.",
            span=6,
        )
    )
    d.with_panel(
        series(
            "Kubernetes API errors / s",
            [
                query(
                    f"sum by (verb, code) (rate(userservice_operator_api_errors_total{{{OP}}}{RATE}))",
                    "{{verb}} {{code}}",
                )
            ],
            "ops",
            "Failed API requests of the operator by verb and status.",
            span=6,
        )
    )
    d.with_panel(
        series(
            "Leader and managed UserServices",
            [
                query(f"sum(userservice_operator_leader{{{OP}}})", "leaders (should be 1)"),
                query(f"max(userservice_operator_managed_resources{{{OP}}})", "managed UserServices"),
            ],
            "none",
            "Exactly one replica leads; the leader reports how many UserServices it manages.",
            span=6,
        )
    )
    return d


def render() -> str:
    board: dict[str, Any] = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    return json.dumps(board, indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
