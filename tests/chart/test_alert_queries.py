"""What the alerts and the dashboard measure: the same selectors everywhere (children/promql.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.chart.support import CHART, ROOT, docs, helm_template
from tests.unit.operator.conftest import make_userservice
from userservice_operator.children import prometheusrule
from userservice_operator.children.promql import (
    ADAPTER_METRICS_QUERY,
    GRPC_SERVER_ERRORS,
    GRPC_UNARY,
    HTTP_TRAFFIC,
    HTTP_UNARY,
    REQUESTS_METRIC,
    RUNBOOKS,
    SERVER_ERRORS,
)


def _chart_rules(*extra: str) -> list[dict[str, Any]]:
    objs = docs(helm_template("--set", "prometheusRule.enabled=true", *extra))
    (rule,) = [d for d in objs if d["kind"] == "PrometheusRule"]
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


SLO = {"availability": {"objective": 99.9}, "latency": {"objective": 99, "thresholdSeconds": 0.25}}


def _operator_rules() -> list[dict[str, Any]]:
    """The alerts of a UserService with every kind of rule (spec.slo's burn-rate alerts too)."""
    rule = prometheusrule.build(make_userservice(slo=SLO))
    assert rule is not None
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def _dashboard_exprs() -> list[str]:
    board = json.loads((CHART / "files" / "dashboard.json").read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets") or []]


def _selectors(expr: str, metric: str) -> list[str]:
    return re.findall(re.escape(metric) + r"\{([^}]*)\}", expr)


def test_latency_queries_leave_streams_out() -> None:
    """/v1/events and WatchUserEvents last as long as the client stays: never part of a latency figure."""
    exprs = [r["expr"] for r in (*_chart_rules(), *_operator_rules())] + _dashboard_exprs()
    http = [s for e in exprs for s in _selectors(e, "userservice_http_request_duration_seconds_bucket")]
    grpc = [s for e in exprs for s in _selectors(e, "userservice_grpc_request_duration_seconds_bucket")]
    assert http and grpc
    assert all(HTTP_UNARY in s for s in http), http
    assert all(GRPC_UNARY in s for s in grpc), grpc


def test_operator_alerts_exist_only_with_the_operator_scrape() -> None:
    """UserServiceOperatorDown is `absent(up)` without the ServiceMonitor: it would fire for ever."""
    without = {r["alert"] for r in _chart_rules()}
    assert not {a for a in without if a.startswith("UserServiceOperator")}
    assert "UserServiceGrpcHighErrorRate" in without
    scraped = {r["alert"] for r in _chart_rules("--set", "metrics.serviceMonitor.enabled=true")}
    assert {"UserServiceOperatorDown", "UserServiceOperatorNoLeader"} <= scraped


def _anchors() -> set[str]:
    """GitHub's anchors of docs/runbooks.md's section headings."""
    text = (ROOT / "docs" / "runbooks.md").read_text()
    return {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)
    }


def test_every_alert_links_its_runbook_section() -> None:
    rules = [
        *_chart_rules("--set", "metrics.serviceMonitor.enabled=true"),
        *_operator_rules(),
    ]
    anchors = _anchors()
    for rule in rules:
        url = rule["annotations"].get("runbook_url", "")
        base, _, anchor = url.partition("#")
        assert base == RUNBOOKS, f"{rule['alert']}: runbook_url {url!r}"
        assert anchor == rule["alert"].lower() and anchor in anchors, f"{rule['alert']}: no section {url!r}"


def test_runbook_base_is_a_chart_value_given_to_the_operator_too() -> None:
    base = "https://docs.example/runbooks"
    rules = _chart_rules("--set", f"prometheusRule.runbookBaseUrl={base}")
    assert all(r["annotations"]["runbook_url"].startswith(f"{base}#") for r in rules)
    (deploy,) = [
        d
        for d in docs(helm_template("--set", f"prometheusRule.runbookBaseUrl={base}"))
        if d["kind"] == "Deployment"
    ]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert f"--runbook-base-url={base}" in container["args"]


def test_dashboard_finds_the_operator_whatever_the_release_is_called() -> None:
    """No panel matches the operator by a name the release can change (fullnameOverride); its job comes from a
    variable listing the jobs that export the operator's own metric."""
    board = json.loads((CHART / "files" / "dashboard.json").read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["operator_job"]["query"] == "label_values(userservice_operator_leader, job)"
    operator_exprs = [e for e in _dashboard_exprs() if "userservice_operator_" in e]
    assert operator_exprs
    assert all('job=~"$operator_job"' in e for e in operator_exprs), operator_exprs
    assert not [e for e in _dashboard_exprs() if "userservice-operator" in e]


def test_request_figures_leave_probes_and_scrapes_out() -> None:
    """Kubelet probes and the Prometheus scrape are not traffic: not in any rate, error ratio or latency."""
    exprs = [r["expr"] for r in (*_chart_rules(), *_operator_rules())] + _dashboard_exprs()
    counts = [s for e in exprs for s in _selectors(e, "userservice_http_requests_total")]
    assert counts and all(HTTP_TRAFFIC in s for s in counts), counts
    assert all(route in HTTP_UNARY for route in ("/healthz", "/readyz", "/metrics", "/v1/events"))


def test_hpa_metric_counts_rest_and_grpc_as_shipped() -> None:
    """The adapter rule the chart ships (and the one-node cluster runs) serves the metric the HPA asks for, over
    both request counters, probes and scrapes excluded. tests/unit keeps the file equal to its source."""
    shipped = yaml.safe_load((CHART / "files" / "prometheus-adapter-rules.yaml").read_text())
    (rule,) = shipped["rules"]
    assert rule["name"] == {"as": REQUESTS_METRIC}
    assert rule["metricsQuery"] == ADAPTER_METRICS_QUERY
    assert (
        "userservice_(http|grpc)_requests_total" in ADAPTER_METRICS_QUERY
        and HTTP_TRAFFIC in ADAPTER_METRICS_QUERY
    )
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}


def test_slo_rules_leave_probes_and_streams_out() -> None:
    """The availability SLI counts no probe or scrape; the latency SLI no stream (REST or gRPC)."""
    rule = prometheusrule.build(make_userservice(slo=SLO))
    assert rule is not None
    records = [r for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r]
    assert len(records) == 14
    for r in records:
        if "availability" in r["record"]:
            assert r["expr"].count(HTTP_TRAFFIC) == 3, r
        else:
            assert r["expr"].count(HTTP_UNARY) == 2 and r["expr"].count(GRPC_UNARY) == 2, r


def test_server_errors_are_one_set_of_codes_everywhere() -> None:
    """Every gRPC error figure (the chart's alerts, the operator's SLOs, the dashboard) counts promql's server
    errors, UNIMPLEMENTED not among them."""
    assert "UNIMPLEMENTED" not in GRPC_SERVER_ERRORS
    exprs = [r["expr"] for r in (*_chart_rules(), *_operator_rules())] + _dashboard_exprs()
    grpc_codes = [
        m
        for e in exprs
        for m in re.findall(r'code=~"[^"]*"', e)
        if any(code in m for code in ("UNKNOWN", "INTERNAL", "UNIMPLEMENTED"))
    ]
    assert grpc_codes and set(grpc_codes) == {SERVER_ERRORS}, set(grpc_codes)


def test_docs_name_the_codes_the_rules_count() -> None:
    """docs/runbooks.md and docs/operator.md list the gRPC server errors as promql.py has them."""
    for page in ("runbooks.md", "operator.md"):
        text = (ROOT / "docs" / page).read_text()
        lists = re.findall(r"UNKNOWN(?:(?:,| and| or)+\s+[A-Z][A-Z_]+)+", text)
        assert lists, page
        for found in lists:
            assert re.findall(r"[A-Z][A-Z_]+", found) == list(GRPC_SERVER_ERRORS), (page, found)


def test_chart_alerts_are_not_the_operators_per_instance_alerts() -> None:
    """REST error rate, REST latency, availability and the event feed are alerted per UserService by the operator;
    the chart alerts on the operator and on what no per-instance rule covers."""
    chart = _chart_rules("--set", "metrics.serviceMonitor.enabled=true")
    assert not {r["alert"] for r in chart} & {r["alert"] for r in _operator_rules()}
    assert not [r["alert"] for r in chart if "userservice_http_" in r["expr"]]
