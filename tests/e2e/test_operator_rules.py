"""The operator's own PrometheusRule (children/prometheusrule.py), checked by Prometheus' `promtool check
rules` and `promtool test rules` on synthetic series. promtool is a cluster tool (`make cluster-tools`), hence
this tier; these tests need no cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import project_tool
from tests.unit.operator.conftest import make_userservice
from userservice_operator.children import prometheusrule

BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "+Inf")


def _rules(tmp_path: Path, **spec: Any) -> tuple[Path, dict[str, dict[str, Any]]]:
    rule = prometheusrule.build(make_userservice(**spec))
    assert rule is not None
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path, {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


def _promtool(*args: str) -> str:
    promtool = project_tool("promtool", make_target="cluster-tools")
    result = subprocess.run([promtool, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _histogram(route: str, above: str, per_minute: int = 60) -> list[dict[str, str]]:
    """Bucket series of requests to `route` that all take longer than `above` seconds (and less than the next
    bucket bound)."""
    base = 'namespace="team-a",service="alpha",method="GET"'
    return [
        {
            "series": f'userservice_http_request_duration_seconds_bucket{{{base},route="{route}",le="{le}"}}',
            "values": "0x40" if le != "+Inf" and float(le) <= float(above) else f"0+{per_minute}x40",
        }
        for le in BUCKETS
    ]


def _up(value: int = 1) -> list[dict[str, str]]:
    return [{"series": 'up{namespace="team-a",service="alpha",pod="alpha-1"}', "values": f"{value}x40"}]


def _test(rules: Path, tmp_path: Path, cases: list[dict[str, Any]]) -> None:
    unit = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": cases}
    (unit_file := tmp_path / "unit.yaml").write_text(yaml.safe_dump(unit))
    _promtool("test", "rules", str(unit_file))


def test_promtool_accepts_the_operator_rules(tmp_path: Path) -> None:
    rules, alerts = _rules(tmp_path)
    assert f"SUCCESS: {len(alerts)} rules found" in _promtool("check", "rules", str(rules))


def test_latency_alert_ignores_the_event_stream(tmp_path: Path) -> None:
    """SSE clients connected for minutes are not slow requests; slow unary requests are."""
    rules, alerts = _rules(tmp_path)
    name = "UserServiceHighLatency"
    _test(
        rules,
        tmp_path,
        [
            {  # fast requests, long-lived streams: no alert
                "interval": "1m",
                "input_series": [
                    *_up(),
                    *_histogram("/v1/users", "0.005"),
                    *_histogram("/v1/events", "5.0", 600),
                ],
                "alert_rule_test": [{"eval_time": "30m", "alertname": name, "exp_alerts": []}],
            },
            {  # slow unary requests: alert
                "interval": "1m",
                "input_series": [*_up(), *_histogram("/v1/users/{id}", "1.0")],
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": name,
                        "exp_alerts": [
                            {
                                "exp_labels": alerts[name]["labels"],
                                "exp_annotations": alerts[name]["annotations"],
                            }
                        ],
                    }
                ],
            },
        ],
    )


def test_event_feed_alert_fires_on_a_long_stall_only(tmp_path: Path) -> None:
    """A transaction holding the feed back for minutes alerts; the short stalls of ordinary writes do not."""
    rules, alerts = _rules(tmp_path)
    name = "UserServiceEventFeedStalled"
    series = 'userservice_event_feed_stall_seconds{namespace="team-a",service="alpha",pod="alpha-1"}'
    _test(
        rules,
        tmp_path,
        [
            {  # sub-second stalls while writes commit: no alert
                "interval": "1m",
                "input_series": [*_up(), {"series": series, "values": "0 0.2 0 0.5 0x36"}],
                "alert_rule_test": [{"eval_time": "30m", "alertname": name, "exp_alerts": []}],
            },
            {  # a transaction left open: its age grows a minute per minute
                "interval": "1m",
                "input_series": [*_up(), {"series": series, "values": "0 0 60+60x38"}],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": name,
                        "exp_alerts": [
                            {
                                "exp_labels": alerts[name]["labels"],
                                "exp_annotations": alerts[name]["annotations"],
                            }
                        ],
                    }
                ],
            },
        ],
    )


# --- spec.slo: burn-rate alerts ----------------------------------------------------------------------------------
SLO = {"availability": {"objective": 99.9}, "latency": {"objective": 99, "thresholdSeconds": 0.25}}
POD = 'namespace="team-a",service="alpha",pod="alpha-1"'


def _requests(per_minute: int, code: str, grpc_method: str = "") -> dict[str, str]:
    """A request counter growing by `per_minute`: REST GET /v1/users, or gRPC `grpc_method`."""
    if grpc_method:
        series = f'userservice_grpc_requests_total{{{POD},method="{grpc_method}",code="{code}"}}'
    else:
        series = f'userservice_http_requests_total{{{POD},method="GET",route="/v1/users",code="{code}"}}'
    return {"series": series, "values": f"0+{per_minute}x300"}


def _fires(alerts: dict[str, dict[str, Any]], name: str, at: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {
                "exp_labels": {**alerts[name]["labels"], "namespace": "team-a", "service": "alpha"},
                "exp_annotations": alerts[name]["annotations"],
            }
        ],
    }


def _quiet(name: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


def test_promtool_accepts_the_slo_rules(tmp_path: Path) -> None:
    rules, alerts = _rules(tmp_path, slo=SLO)
    out = _promtool("check", "rules", str(rules))
    # the four burn-rate alerts, seven recording rules per objective, and the other alerts
    assert f"SUCCESS: {len(alerts) + 14} rules found" in out, out
    assert {
        "UserServiceAvailabilityFastBurn",
        "UserServiceAvailabilitySlowBurn",
        "UserServiceLatencyFastBurn",
        "UserServiceLatencySlowBurn",
    } <= set(alerts)


def test_availability_burn_pages_tickets_or_stays_quiet_by_rate(tmp_path: Path) -> None:
    """Objective 99.9 %: 2 % server errors (20x the budget) pages; 0.5 % (5x) opens a ticket only; 0.05 % and
    client errors, however many, do neither; a page stops soon after the errors do."""
    rules, alerts = _rules(tmp_path, slo=SLO)
    page, ticket = "UserServiceAvailabilityFastBurn", "UserServiceAvailabilitySlowBurn"
    _test(
        rules,
        tmp_path,
        [
            {  # 2 % of REST requests fail with 500
                "interval": "1m",
                "input_series": [_requests(980, "200"), _requests(20, "500")],
                "alert_rule_test": [_fires(alerts, page, "70m"), _fires(alerts, ticket, "150m")],
            },
            {  # 2 % of gRPC calls fail with INTERNAL: gRPC counts the same
                "interval": "1m",
                "input_series": [
                    _requests(980, "OK", "/userservice.v1.UserService/GetUser"),
                    _requests(20, "INTERNAL", "/userservice.v1.UserService/GetUser"),
                ],
                "alert_rule_test": [_fires(alerts, page, "70m")],
            },
            {  # 0.5 % fail with UNAVAILABLE: a ticket after a while, never a page
                "interval": "1m",
                "input_series": [
                    _requests(995, "OK", "/userservice.v1.UserService/ListUsers"),
                    _requests(5, "UNAVAILABLE", "/userservice.v1.UserService/ListUsers"),
                ],
                "alert_rule_test": [_quiet(page, "4h"), _fires(alerts, ticket, "4h")],
            },
            {  # 0.05 % server errors; half of all requests are the callers' mistakes (404, NOT_FOUND)
                "interval": "1m",
                "input_series": [
                    _requests(9995, "200"),
                    _requests(5, "503"),
                    _requests(10000, "404"),
                    _requests(10000, "NOT_FOUND", "/userservice.v1.UserService/GetUser"),
                ],
                "alert_rule_test": [_quiet(page, "4h"), _quiet(ticket, "4h")],
            },
            {  # 2 % errors for 90 minutes, then none: the page ends once the 5m and 30m windows are clean
                "interval": "1m",
                "input_series": [
                    _requests(980, "200"),
                    {
                        "series": f'userservice_http_requests_total{{{POD},method="GET",route="/v1/users",code="500"}}',
                        "values": "0+20x90 1800x200",
                    },
                ],
                "alert_rule_test": [_fires(alerts, page, "80m"), _quiet(page, "125m")],
            },
        ],
    )


def _durations(method: str, route: str, slow_per_minute: int, fast_per_minute: int) -> list[dict[str, str]]:
    """Bucket series: `fast_per_minute` requests under 0.1 s and `slow_per_minute` between 0.5 s and 1 s."""
    if route:
        name, labels = (
            "userservice_http_request_duration_seconds_bucket",
            f'{POD},method="{method}",route="{route}"',
        )
    else:
        name, labels = "userservice_grpc_request_duration_seconds_bucket", f'{POD},method="{method}"'
    out = []
    for le in BUCKETS:
        count = (fast_per_minute if float(le) >= 0.1 else 0) + (slow_per_minute if float(le) >= 1.0 else 0)
        out.append({"series": f'{name}{{{labels},le="{le}"}}', "values": f"0+{count}x300"})
    return out


def test_latency_burn_counts_unary_requests_only(tmp_path: Path) -> None:
    """Objective 99 % under 0.25 s: 20 % slow unary requests page; hour-long streams (SSE, WatchUserEvents)
    beside fast unary requests do not."""
    rules, alerts = _rules(tmp_path, slo=SLO)
    page, ticket = "UserServiceLatencyFastBurn", "UserServiceLatencySlowBurn"
    _test(
        rules,
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    *_durations("GET", "/v1/users/{id}", 20, 80),
                    *_durations("/userservice.v1.UserService/GetUser", "", 0, 100),
                ],
                "alert_rule_test": [_fires(alerts, page, "70m")],
            },
            {
                "interval": "1m",
                "input_series": [
                    *_durations("GET", "/v1/users/{id}", 0, 100),
                    *_durations("GET", "/v1/events", 50, 0),
                    *_durations("/userservice.v1.UserService/WatchUserEvents", "", 50, 0),
                ],
                "alert_rule_test": [_quiet(page, "4h"), _quiet(ticket, "4h")],
            },
        ],
    )
