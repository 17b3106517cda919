"""The chart's copies of the operator's single sources (CRD, RBAC) and the generated dashboard stay in step."""

from __future__ import annotations

import importlib.util

import yaml

from tests.chart.support import CHART, OPERATOR_PKG, ROOT, docs, helm_template
from userservice_operator.children import CHILDREN


def test_crd_copy_matches_the_operator_source() -> None:
    copy = CHART / "crds" / "userservices.userservice.io.yaml"
    assert copy.read_text() == (OPERATOR_PKG / "crd.yaml").read_text(), (
        "charts/userservice-operator/crds/ drifted from operator/userservice_operator/crd.yaml: "
        "run `bash hack/chart-sync.sh`"
    )
    assert [p.name for p in (CHART / "crds").iterdir()] == ["userservices.userservice.io.yaml"]


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
