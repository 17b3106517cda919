"""What the operator gives a UserService for push delivery, as pure functions: the Role and RoleBinding of its
ServiceAccount (subscriptions read, their status written, exactly the signing Secrets by name), the Secret names
taken from the subscriptions naming it, the pods told which instance they deliver, and a NetworkPolicy that leaves
egress to sinks open. Also the UserEventSubscription CRD's names, columns, descriptions and defaults."""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml

from tests.unit.operator.conftest import apply_defaults, make_userservice
from tests.unit.operator.test_crd import ROOT, _plain, _walk
from userservice.domain import subscriptions as service_side
from userservice_operator.children import CHILDREN, deployment, networkpolicy, subscriptionaccess
from userservice_operator.children.context import BuildContext
from userservice_operator.crd import SUBSCRIPTION_CRD_NAME, load_rbac, load_subscription_crd
from userservice_operator.reconcile import child_owner, signing_secrets, subscription_owner


def subscription(name: str, user_service: str, secret: str, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"userService": user_service, "signingSecretRef": {"name": secret, "key": "key"}},
    }


def test_the_role_grants_exactly_the_subscriptions_their_status_and_the_named_secrets() -> None:
    us = make_userservice(name="alpha", namespace="team-a")
    role = subscriptionaccess.build_role(us, BuildContext(signing_secrets=("b-key", "a-key")))
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "team-a"
    assert role["metadata"]["name"] == "alpha-subscriptions"
    assert child_owner(role) == ("team-a", "alpha")
    assert role["rules"] == [
        {
            "apiGroups": ["userservice.io"],
            "resources": ["usereventsubscriptions"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["userservice.io"],
            "resources": ["usereventsubscriptions/status"],
            "verbs": ["patch", "update"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["a-key", "b-key"]},
    ]
    binding = subscriptionaccess.build_binding(us)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "alpha-subscriptions",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "alpha", "namespace": "team-a"}]


def test_without_signing_secrets_no_secret_is_granted_at_all() -> None:
    """An empty resourceNames would grant every Secret of the namespace."""
    role = subscriptionaccess.build_role(make_userservice(), BuildContext())
    assert all("secrets" not in rule["resources"] for rule in role["rules"])
    assert all(rule.get("resourceNames", ["x"]) for rule in role["rules"])


def test_secret_names_come_from_the_subscriptions_naming_the_instance() -> None:
    listed = [
        subscription("a", "alpha", "k1"),
        subscription("b", "alpha", "k2"),
        subscription("c", "alpha", "k1"),
        subscription("d", "beta", "k3"),  # another instance's
        {"metadata": {"name": "e", "namespace": "team-a"}, "spec": {"userService": "alpha"}},  # not valid yet
    ]
    assert signing_secrets(listed, "alpha") == ("k1", "k2")
    assert subscription_owner(listed[3]) == ("team-a", "beta")
    assert subscription_owner({"metadata": {"namespace": "x"}, "spec": {}}) is None


def test_the_pods_are_told_which_instance_they_deliver_for() -> None:
    us = make_userservice(name="alpha")
    (container,) = deployment.build(us)["spec"]["template"]["spec"]["containers"]
    assert {"name": "SUBSCRIPTIONS_USERSERVICE", "value": "alpha"} in container["env"]


def test_the_network_policy_leaves_egress_open_so_sinks_can_be_reached() -> None:
    """Sinks are Services of any namespace or (opted in) public URIs, beside the database and the API server:
    the policy fences ingress only; the service's sink guard fences where a POST may go."""
    policy = networkpolicy.build(make_userservice())
    assert policy is not None
    assert policy["spec"]["policyTypes"] == ["Ingress"] and "egress" not in policy["spec"]


def test_the_operator_holds_what_it_grants_and_manages_roles() -> None:
    (operator,) = [d for d in load_rbac() if d["metadata"]["name"] == "userservice-operator"]

    def verbs(group: str, resource: str) -> set[str]:
        return {
            v
            for r in operator["rules"]
            if group in r["apiGroups"] and resource in r["resources"]
            for v in r["verbs"]
        }

    for rule in subscriptionaccess.rules(["k"]):
        for resource in rule["resources"]:
            assert set(rule["verbs"]) <= verbs(rule["apiGroups"][0], resource), resource
    assert {"create", "patch", "delete"} <= verbs("rbac.authorization.k8s.io", "roles")
    assert {c.kind for c in CHILDREN} >= {"Role", "RoleBinding"}


def crd_schema() -> dict[str, Any]:
    return dict(load_subscription_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def test_subscription_crd_names_and_columns() -> None:
    crd = load_subscription_crd()
    assert crd["metadata"]["name"] == SUBSCRIPTION_CRD_NAME
    assert crd["spec"]["group"] == "userservice.io" and crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == service_side.KIND
    assert crd["spec"]["names"]["plural"] == service_side.PLURAL
    (version,) = crd["spec"]["versions"]
    assert version["name"] == service_side.API_VERSION and version["subresources"] == {"status": {}}
    # `kubectl get userservice NAME` must keep naming one kind: not in UserService's category
    assert "categories" not in crd["spec"]["names"]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "Sink", "Lag", "Last delivered", "Age"]


def test_every_subscription_field_is_described_and_typed() -> None:
    root = crd_schema()["properties"]
    for part in ("spec", "status"):
        for path, node in _walk(root[part], part):
            if path.endswith(("[]", "{}")):
                continue
            assert node.get("description"), f"{path} has no description"
            assert "type" in node, f"{path} has no type"


def test_types_enum_is_the_services_event_types() -> None:
    from userservice.domain.events import EVENT_TYPES

    assert crd_schema()["properties"]["spec"]["properties"]["types"]["items"]["enum"] == list(EVENT_TYPES)


def test_the_sample_subscription_is_valid_and_defaults_fill_in() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/samples/subscription.yaml").read_text()))
    (sample,) = [d for d in docs if d and d["kind"] == service_side.KIND]
    jsonschema.validate(sample, _plain(crd_schema()))
    defaulted = apply_defaults(crd_schema(), sample)
    sub = service_side.from_manifest(
        {**defaulted, "metadata": {**defaulted["metadata"], "namespace": "default"}}
    )
    assert sub.delivery == service_side.Delivery()  # the CRD's defaults are the service's
    assert sub.start_at is service_side.StartAt.NOW
