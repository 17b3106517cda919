"""The compare-before-write rule of the SSA step."""

from __future__ import annotations

import copy

from tests.unit.operator.conftest import make_userservice
from userservice_operator.apply import is_subset, up_to_date
from userservice_operator.children import deployment
from userservice_operator.kube import KINDS


def test_is_subset() -> None:
    assert is_subset({"a": 1}, {"a": 1, "b": 2})
    assert not is_subset({"a": 1}, {"a": 2})
    assert is_subset({"l": [{"x": 1}]}, {"l": [{"x": 1, "y": 2}]})
    assert not is_subset({"l": [{"x": 1}]}, {"l": [{"x": 1}, {"x": 2}]})
    assert not is_subset({"b": True}, {"b": 1})
    assert is_subset({"p": 8080}, {"p": 8080})


def test_up_to_date_detects_drift_and_spec_change() -> None:
    desired = deployment.build(make_userservice())
    live = copy.deepcopy(desired)
    live["metadata"]["resourceVersion"] = "7"
    live["spec"]["progressDeadlineSeconds"] = 600  # server-side default: not ours
    live["status"] = {"replicas": 2}
    assert up_to_date(desired, live)
    assert not up_to_date(desired, None)
    drifted = copy.deepcopy(live)
    drifted["spec"]["replicas"] = 7
    assert not up_to_date(desired, drifted)
    changed = deployment.build(make_userservice(logLevel="debug"))
    assert not up_to_date(changed, live)
    # removing a field changes the hash even though the rest is a subset of the live object
    removed = deployment.build(make_userservice(pod={"nodeSelector": {"a": "b"}}))
    assert not up_to_date(desired, {**removed, "metadata": removed["metadata"]})


def test_paths() -> None:
    assert KINDS["Deployment"].path("ns", "x") == "/apis/apps/v1/namespaces/ns/deployments/x"
    assert KINDS["Service"].path("ns") == "/api/v1/namespaces/ns/services"
    assert KINDS["UserService"].path("ns", "x", "status") == (
        "/apis/userservice.io/v1alpha1/namespaces/ns/userservices/x/status"
    )
    assert KINDS["CustomResourceDefinition"].path(None, "a.b") == (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/a.b"
    )
