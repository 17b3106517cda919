"""The chart's copies of the operator's single sources (CRD, RBAC), the generated dashboard and alert rules stay in
step."""

from __future__ import annotations

import importlib.util
from typing import Any

import yaml

from hack.docgen import chart_rules
from tests.chart.support import CHART, OPERATOR_PKG, ROOT, docs, helm_template
from userservice_operator.children import CHILDREN


def test_crd_copies_match_the_operator_sources() -> None:
    sources = {
        "userservices.userservice.io.yaml": "crd.yaml",
        "usereventsubscriptions.userservice.io.yaml": "subscription_crd.yaml",
    }
    for copy, source in sources.items():
        assert (CHART / "crds" / copy).read_text() == (OPERATOR_PKG / source).read_text(), (
            f"charts/userservice-operator/crds/{copy} drifted from operator/userservice_operator/{source}: "
            "run `bash hack/chart-sync.sh`"
        )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(sources)


def test_rbac_copy_matches_the_operator_source() -> None:
    assert (CHART / "files" / "rbac.yaml").read_text() == (OPERATOR_PKG / "rbac.yaml").read_text(), (
        "charts/userservice-operator/files/rbac.yaml drifted from operator/userservice_operator/rbac.yaml: "
        "run `bash hack/chart-sync.sh`"
    )


def test_rendered_rbac_grants_exactly_the_operator_rules() -> None:
    source = {
        d["metadata"]["name"]: d["rules"]
        for d in yaml.safe_load_all((OPERATOR_PKG / "rbac.yaml").read_text())
        if d
    }
    rendered = {
        (d["kind"], d["metadata"]["name"]): d["rules"]
        for d in docs(helm_template(release="userservice-operator"))
        if d["kind"] in ("ClusterRole", "Role")
    }
    expected = {
        ("ClusterRole", "userservice-operator"): source["userservice-operator"],
        ("ClusterRole", "userservice-operator-cluster"): source["userservice-operator-cluster"],
        ("Role", "userservice-operator-leader-election"): source["userservice-operator-leader-election"],
    }
    access = {
        d["metadata"]["name"]
        for d in yaml.safe_load_all((OPERATOR_PKG / "rbac.yaml").read_text())
        if d and d["metadata"]["labels"].get("app.kubernetes.io/component") == "access"
    }
    # The access roles (the reviewer role instances are bound to, the personas) keep their fixed names; the
    # aggregated roles for people (edit/admin/view) are named after the release.
    for name, rules in source.items():
        if name in access:
            expected[("ClusterRole", name)] = rules
        elif name.startswith("userservice-") and name not in (
            "userservice-operator",
            "userservice-operator-cluster",
            "userservice-operator-leader-election",
        ):
            expected[("ClusterRole", "userservice-operator-" + name.removeprefix("userservice-"))] = rules
    assert rendered == expected


def test_dashboard_json_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("gen_dashboard", ROOT / "hack" / "gen-dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (CHART / "files" / "dashboard.json").read_text() == module.render(), (
        "files/dashboard.json is stale: run `make docs`"
    )


def test_rendered_rbac_covers_every_child_kind() -> None:
    """Each row of the child table can be watched, applied and deleted under the chart's ClusterRoles: namespaced
    kinds under the one that may be bound per namespace, cluster-scoped kinds under the cluster-wide one."""
    roles = {
        d["metadata"]["name"]: d
        for d in docs(helm_template(release="userservice-operator"))
        if d["kind"] == "ClusterRole"
    }
    needed = {"get", "list", "watch", "create", "patch", "delete"}
    for child in CHILDREN:
        role = roles["userservice-operator" if child.namespaced else "userservice-operator-cluster"]
        verbs = {
            verb
            for rule in role["rules"]
            if child.group in rule["apiGroups"] and child.plural in rule["resources"]
            for verb in rule["verbs"]
        }
        assert needed <= verbs, f"{child.kind}: the chart's RBAC lacks {sorted(needed - verbs)}"


def _filled(value: Any, fill: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _filled(v, fill) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, fill) for v in value]
    for placeholder, text in fill.items():
        value = value.replace(placeholder, text)
    return value


def test_chart_rules_are_the_generated_file_with_the_release_filled_in() -> None:
    """templates/prometheusrule.yaml adds to files/prometheus-rules.yaml (compared whole with its generator by
    tests/unit) nothing but the release's names, prometheusRule's values and alertLabels."""
    base = "https://docs.example/runbooks"
    rendered = helm_template(
        *("--set", "prometheusRule.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"),
        *(
            "--set",
            f"prometheusRule.runbookBaseUrl={base}",
            "--set",
            "prometheusRule.alertLabels.team=platform",
        ),
        "--set-json",
        'prometheusRule.thresholds={"errorRatio": 0.02, "latencyP99Seconds": 0.3, "dbPoolSaturation": 0.8,'
        ' "podRestartsPerHour": 2, "reconcileErrorsFor": "30m"}',
        release="rel",
        namespace="ops",
    )
    (rule,) = [d for d in docs(rendered) if d["kind"] == "PrometheusRule"]
    job = "rel-userservice-operator-metrics"
    fill = {
        chart_rules.OPERATOR: f'job="{job}",namespace="ops"',
        chart_rules.NAMESPACE: "ops",
        chart_rules.JOB: job,
        chart_rules.RELEASE: "rel",
        chart_rules.LEASE: "rel-userservice-operator",
        chart_rules.RUNBOOKS: base,
        chart_rules.ERROR_RATIO: "0.02",
        chart_rules.ERROR_PERCENT: "2",
        chart_rules.LATENCY: "0.3",
        chart_rules.POOL_SATURATION: "0.8",
        chart_rules.POOL_PERCENT: "80",
        chart_rules.RESTARTS: "2",
        chart_rules.RECONCILE_ERRORS_FOR: "30m",
    }
    expected = _filled(yaml.safe_load((ROOT / chart_rules.CHART_FILE).read_text())["groups"], fill)
    for group in expected:
        for alert in group["rules"]:
            alert["labels"]["team"] = "platform"
    assert rule["spec"]["groups"] == expected
    assert "<<" not in rendered
