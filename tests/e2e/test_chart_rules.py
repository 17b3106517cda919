"""The chart's PrometheusRule, checked by Prometheus' own `promtool check rules` (PromQL parses, templates in
annotations expand, durations are valid) and `promtool test rules`. promtool is built from the same pinned
Prometheus module as the cluster's server (`make cluster-tools`); hence this tier."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.support import ALL_OPTIONS, docs, helm_template
from tests.support.tools import project_tool


@pytest.mark.parametrize(
    "extra", [["--set", "prometheusRule.enabled=true"], []], ids=["defaults", "all-options"]
)
def test_promtool_accepts_the_chart_alert_rules(extra: list[str], cluster: Any, tmp_path: Path) -> None:
    promtool = project_tool("promtool", make_target="cluster-tools")
    values = None if extra else ALL_OPTIONS
    (rule,) = [d for d in docs(helm_template(*extra, values=values)) if d["kind"] == "PrometheusRule"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_operator_alerts_fire_when_they_should(cluster: Any, tmp_path: Path) -> None:
    """promtool's rule unit tests on synthetic series: no leader and persistent reconcile errors alert; a
    healthy operator does not."""
    promtool = project_tool("promtool", make_target="cluster-tools")
    release, ns = "rel", "ops"
    objs = docs(
        helm_template(
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            release=release,
            namespace=ns,
        )
    )
    (rule,) = [d for d in objs if d["kind"] == "PrometheusRule"]
    (rules_file := tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    job = f'job="{release}-userservice-operator-metrics",namespace="{ns}"'

    def expected(name: str) -> list[dict[str, Any]]:
        return [{"exp_labels": alerts[name]["labels"], "exp_annotations": alerts[name]["annotations"]}]

    unit = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {   # A broken operator: up, but nobody leads and every reconcile fails.
                "interval": "1m",
                "input_series": [
                    {"series": f"up{{{job}}}", "values": "1x40"},
                    {"series": f"userservice_operator_leader{{{job}}}", "values": "0x40"},
                    {"series": f'userservice_operator_reconciles_total{{{job},result="error"}}', "values": "0+3x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "UserServiceOperatorNoLeader", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "UserServiceOperatorNoLeader",
                     "exp_alerts": expected("UserServiceOperatorNoLeader")},
                    {"eval_time": "30m", "alertname": "UserServiceOperatorReconcileErrors",
                     "exp_alerts": expected("UserServiceOperatorReconcileErrors")},
                    {"eval_time": "30m", "alertname": "UserServiceOperatorDown", "exp_alerts": []},
                ],
            },
            {   # A healthy one: no alert.
                "interval": "1m",
                "input_series": [
                    {"series": f"up{{{job}}}", "values": "1x40"},
                    {"series": f"userservice_operator_leader{{{job}}}", "values": "1x40"},
                    {"series": f'userservice_operator_reconciles_total{{{job},result="success"}}', "values": "0+3x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": name, "exp_alerts": []}
                    for name in ("UserServiceOperatorNoLeader", "UserServiceOperatorReconcileErrors",
                                 "UserServiceOperatorDown")
                ],
            },
        ],
    }  # fmt: skip
    (unit_file := tmp_path / "unit.yaml").write_text(yaml.safe_dump(unit))
    result = subprocess.run(
        [promtool, "test", "rules", str(unit_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
