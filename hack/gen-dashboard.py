#!/usr/bin/env python3
"""Writes charts/userservice-operator/files/dashboard.json, the Grafana dashboard the chart ships.

The dashboard is code here (panels as data, one helper per panel kind) and the JSON is committed; a chart test
fails when the committed JSON differs from what this script writes. Run: make docs (or .venv/bin/python
hack/gen-dashboard.py; it imports the PromQL selectors of the operator package)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from userservice_operator.children.promql import GRPC_UNARY, HTTP_TRAFFIC, HTTP_UNARY, with_selector

OUT = Path(__file__).resolve().parent.parent / "charts/userservice-operator/files/dashboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'namespace=~"$namespace",service=~"$service"'
# Probes and scrapes are not traffic; latency figures also leave streams out (their duration is the stream's
# lifetime).
SEL_HTTP = with_selector(SEL, HTTP_TRAFFIC)
SEL_HTTP_UNARY = with_selector(SEL, HTTP_UNARY)
SEL_GRPC_UNARY = with_selector(SEL, GRPC_UNARY)
# The operator's scrape jobs, found from its own metric: whatever the release or fullnameOverride is called.
OP = 'job=~"$operator_job"'


class Layout:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0
        self.x = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        if self.x:
            self.y += 8
            self.x = 0
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self._id(),
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def add(self, panel: dict[str, Any], w: int = 8, h: int = 8) -> None:
        if self.x + w > 24:
            self.y += h
            self.x = 0
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def timeseries(
    title: str,
    targets: list[dict[str, Any]],
    unit: str,
    description: str,
    stack: bool = False,
    thresholds: list[tuple[str, float | None]] | None = None,
) -> dict[str, Any]:
    steps = [{"color": c, "value": v} for c, v in (thresholds or [("green", None)])]
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 15 if stack else 5,
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                    "showPoints": "never",
                    "spanNulls": True,
                    "thresholdsStyle": {"mode": "line" if thresholds else "off"},
                },
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["mean", "max", "lastNotNull"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str, expr: str, unit: str, description: str, thresholds: list[tuple[str, float | None]]
) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, "")],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": c, "value": v} for c, v in thresholds],
                },
            },
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "area",
            "reduceOptions": {"calcs": ["lastNotNull"]},
        },
    }


def build() -> dict[str, Any]:
    lay = Layout()
    http5xx = f'sum(rate(userservice_http_requests_total{{{SEL_HTTP},code=~"5.."}}[$__rate_interval]))'
    http_all = f"sum(rate(userservice_http_requests_total{{{SEL_HTTP}}}[$__rate_interval]))"
    grpc_err = (
        f"sum(rate(userservice_grpc_requests_total{{{SEL},"
        'code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED|UNIMPLEMENTED"}[$__rate_interval]))'
    )
    grpc_all = f"sum(rate(userservice_grpc_requests_total{{{SEL}}}[$__rate_interval]))"

    lay.row("Overview")
    lay.add(
        stat(
            "Requests / s (REST + gRPC)",
            f"{http_all} + {grpc_all}",
            "reqps",
            "All requests served by the selected instances.",
            [("blue", None)],
        ),
        w=6,
        h=5,
    )
    lay.add(
        stat(
            "Server errors",
            f"({http5xx} + {grpc_err}) / clamp_min({http_all} + {grpc_all}, 1e-9)",
            "percentunit",
            "Share of requests answered 5xx (REST) or a server-side gRPC status.",
            [("green", None), ("orange", 0.01), ("red", 0.05)],
        ),
        w=6,
        h=5,
    )
    lay.add(
        stat(
            "p99 latency (REST)",
            "histogram_quantile(0.99, sum by (le) (rate("
            f"userservice_http_request_duration_seconds_bucket{{{SEL_HTTP_UNARY}}}[$__rate_interval])))",
            "s",
            "99th percentile of REST request latency.",
            [("green", None), ("orange", 0.25), ("red", 0.5)],
        ),
        w=6,
        h=5,
    )
    lay.add(
        stat(
            "Ready replicas",
            f"sum(userservice_ready{{{SEL}}})",
            "none",
            "Pods reporting ready (/readyz) among those scraped.",
            [("red", None), ("orange", 1), ("green", 2)],
        ),
        w=6,
        h=5,
    )

    lay.row("Traffic")
    lay.add(
        timeseries(
            "REST requests / s by route",
            [
                target(
                    f"sum by (method, route) (rate(userservice_http_requests_total{{{SEL_HTTP}}}[$__rate_interval]))",
                    "{{method}} {{route}}",
                )
            ],
            "reqps",
            "REST request rate per route template.",
            stack=True,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "gRPC calls / s by method",
            [
                target(
                    f"sum by (method) (rate(userservice_grpc_requests_total{{{SEL}}}[$__rate_interval]))",
                    "{{method}}",
                )
            ],
            "reqps",
            "gRPC call rate per method.",
            stack=True,
        ),
        w=12,
    )

    lay.row("Errors")
    lay.add(
        timeseries(
            "REST responses / s by status",
            [
                target(
                    f'sum by (code) (rate(userservice_http_requests_total{{{SEL_HTTP},code!~"2.."}}[$__rate_interval]))',
                    "{{code}}",
                )
            ],
            "reqps",
            "Non-2xx REST responses: 4xx are client mistakes, 5xx are ours.",
            stack=True,
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "gRPC non-OK / s by code",
            [
                target(
                    f'sum by (code) (rate(userservice_grpc_requests_total{{{SEL},code!="OK"}}[$__rate_interval]))',
                    "{{code}}",
                )
            ],
            "reqps",
            "gRPC calls that ended with a status other than OK.",
            stack=True,
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Server error ratio",
            [
                target(f"{http5xx} / clamp_min({http_all}, 1e-9)", "REST 5xx"),
                target(f"{grpc_err} / clamp_min({grpc_all}, 1e-9)", "gRPC server errors"),
            ],
            "percentunit",
            "Share of requests failing on the server side. The alert fires above 5% for 10 minutes.",
            thresholds=[("green", None), ("red", 0.05)],
        ),
        w=8,
    )

    lay.row("Latency")
    lay.add(
        timeseries(
            "REST latency percentiles",
            [
                target(
                    "histogram_quantile(" + q + ", sum by (le) (rate("
                    f"userservice_http_request_duration_seconds_bucket{{{SEL_HTTP_UNARY}}}[$__rate_interval])))",
                    f"p{int(float(q) * 100)}",
                )
                for q in ("0.5", "0.9", "0.99")
            ],
            "s",
            "REST latency p50 / p90 / p99 over all routes.",
            thresholds=[("green", None), ("red", 0.5)],
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "gRPC latency percentiles (unary)",
            [
                target(
                    "histogram_quantile(" + q + ", sum by (le) (rate("
                    f"userservice_grpc_request_duration_seconds_bucket{{{SEL_GRPC_UNARY}}}[$__rate_interval])))",
                    f"p{int(float(q) * 100)}",
                )
                for q in ("0.5", "0.9", "0.99")
            ],
            "s",
            "gRPC unary call latency p50 / p90 / p99 (streams excluded: they last as long as the client).",
            thresholds=[("green", None), ("red", 0.5)],
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "p99 latency by REST route",
            [
                target(
                    "histogram_quantile(0.99, sum by (le, method, route) (rate("
                    f"userservice_http_request_duration_seconds_bucket{{{SEL_HTTP_UNARY}}}[$__rate_interval])))",
                    "{{method}} {{route}}",
                )
            ],
            "s",
            "Which route is slow.",
            thresholds=[("green", None), ("red", 0.5)],
        ),
        w=8,
    )

    lay.row("Database and events")
    lay.add(
        timeseries(
            "DB pool connections",
            [
                target(f'sum(userservice_db_pool_connections{{{SEL},state="in_use"}})', "in use"),
                target(f'sum(userservice_db_pool_connections{{{SEL},state="idle"}})', "idle"),
                target(f"sum(userservice_db_pool_max_connections{{{SEL}}})", "max"),
            ],
            "none",
            "PostgreSQL connections of all pods' pools. In use near max means requests queue for a "
            "connection.",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Password hashing latency",
            [
                target(
                    "histogram_quantile(" + q + ", sum by (le) (rate("
                    f"userservice_password_hash_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                    f"p{int(float(q) * 100)}",
                )
                for q in ("0.5", "0.99")
            ],
            "s",
            "argon2id hash/verify time: CPU-bound, grows when pods are CPU-throttled.",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "User changes and events / s",
            [
                target(
                    f"sum by (operation) (rate(userservice_user_changes_total{{{SEL}}}[$__rate_interval]))",
                    "{{operation}}",
                ),
                target(
                    f"sum(rate(userservice_events_appended_total{{{SEL}}}[$__rate_interval]))",
                    "events appended",
                ),
            ],
            "ops",
            "Creates, updates and deletes, and the change events written to the outbox.",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Event watchers",
            [target(f"sum by (transport) (userservice_event_watchers{{{SEL}}})", "{{transport}}")],
            "none",
            "Connected WatchUserEvents streams (grpc) and /v1/events clients (sse).",
            stack=True,
        ),
        w=8,
    )

    lay.row("Replicas")
    lay.add(
        timeseries(
            "Ready pods by instance",
            [
                target(
                    f"sum by (namespace, service) (userservice_ready{{{SEL}}})",
                    "{{namespace}}/{{service}} ready",
                ),
                target(
                    f"count by (namespace, service) (up{{{SEL}}} == 1)", "{{namespace}}/{{service}} scraped"
                ),
            ],
            "none",
            "Pods reporting ready, and pods Prometheus reaches, per UserService.",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Container restarts (1h)",
            [
                target(
                    'sum by (namespace, pod) (increase(kube_pod_container_status_restarts_total{namespace=~"$namespace",'
                    'container="userservice"}[1h]))',
                    "{{namespace}}/{{pod}}",
                )
            ],
            "none",
            "Restarts of the service containers (kube-state-metrics). The alert fires above 3 an hour.",
            thresholds=[("green", None), ("red", 3)],
        ),
        w=12,
    )

    lay.row("Operator")
    lay.add(
        timeseries(
            "Reconciles / s by result",
            [
                target(
                    f"sum by (result) (rate(userservice_operator_reconciles_total{{{OP}}}[$__rate_interval]))",
                    "{{result}}",
                )
            ],
            "ops",
            "Reconcile passes: success, retry (transient), error (the alert fires when errors persist).",
            stack=True,
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Reconcile duration",
            [
                target(
                    "histogram_quantile(" + q + ", sum by (le) (rate("
                    f"userservice_operator_reconcile_duration_seconds_bucket{{{OP}}}[$__rate_interval])))",
                    f"p{int(float(q) * 100)}",
                )
                for q in ("0.5", "0.99")
            ],
            "s",
            "Time of one reconcile pass.",
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Kubernetes API errors / s",
            [
                target(
                    f"sum by (verb, code) (rate(userservice_operator_api_errors_total{{{OP}}}[$__rate_interval]))",
                    "{{verb}} {{code}}",
                )
            ],
            "ops",
            "Failed API requests of the operator by verb and status.",
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Leader and managed UserServices",
            [
                target(f"sum(userservice_operator_leader{{{OP}}})", "leaders (should be 1)"),
                target(f"max(userservice_operator_managed_resources{{{OP}}})", "managed UserServices"),
            ],
            "none",
            "Exactly one replica leads; the leader reports how many UserServices it manages.",
        ),
        w=6,
    )

    variables = [
        {
            "name": "datasource",
            "type": "datasource",
            "query": "prometheus",
            "label": "Data source",
            "current": {},
            "hide": 0,
            "refresh": 1,
        },
        {
            "name": "namespace",
            "type": "query",
            "label": "Namespace",
            "datasource": DS,
            "query": {"query": "label_values(userservice_ready, namespace)", "refId": "ns"},
            "definition": "label_values(userservice_ready, namespace)",
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "refresh": 2,
            "sort": 1,
            "current": {"text": "All", "value": "$__all"},
        },
        {
            "name": "service",
            "type": "query",
            "label": "UserService",
            "datasource": DS,
            "query": {
                "query": 'label_values(userservice_ready{namespace=~"$namespace"}, service)',
                "refId": "svc",
            },
            "definition": 'label_values(userservice_ready{namespace=~"$namespace"}, service)',
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "refresh": 2,
            "sort": 1,
            "current": {"text": "All", "value": "$__all"},
        },
        {
            "name": "operator_job",
            "type": "query",
            "label": "Operator",
            "datasource": DS,
            "query": {"query": "label_values(userservice_operator_leader, job)", "refId": "op"},
            "definition": "label_values(userservice_operator_leader, job)",
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "refresh": 2,
            "sort": 1,
            "current": {"text": "All", "value": "$__all"},
        },
    ]
    return {
        "uid": "userservice-overview",
        "title": "userservice",
        "description": "User service instances (REST, gRPC, database, events) and the userservice operator.",
        "tags": ["userservice", "operator"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": lay.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
