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
    return path, {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


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
