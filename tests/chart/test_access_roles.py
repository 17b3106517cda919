"""The chart's access ClusterRoles: the personas grant exactly the operations the access contract gives them
(read from the service's PERMISSIONS table), and the role each UserService's ServiceAccount is bound to holds
only the two review rules."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.support import docs, helm_template
from userservice.access.permissions import GROUP, PERMISSIONS

# Every API operation and the (resource, verb) its SubjectAccessReview asks about: the service's one table.
OPERATIONS: dict[str, tuple[str, str]] = {op: (p.resource_name, p.verb) for op, p in PERMISSIONS.items()}
READ = {"GetUser", "ListUsers", "WatchUserEvents"}
WRITE = {
    "CreateUser",
    "BatchCreateUsers",
    "UpdateUser",
    "UndeleteUser",
    "DeleteUser",
    "ChangePassword",
    "UnlockUser",
}
PERSONAS: dict[str, set[str]] = {
    "userservice-viewer": READ,
    "userservice-verifier": {"VerifyPassword"},
    # SCIM's verbs (an identity provider); batch create and undelete share their create and update verbs.
    "userservice-provisioner": {
        "GetUser",
        "ListUsers",
        "CreateUser",
        "BatchCreateUsers",
        "UpdateUser",
        "UndeleteUser",
        "DeleteUser",
    },
    "userservice-editor": READ | WRITE | {"VerifyPassword"},
    "userservice-admin": READ | WRITE | {"VerifyPassword", "EraseUser", "ExportUser"},
}


def _cluster_roles() -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d
        for d in docs(helm_template(release="any-release-name"))
        if d["kind"] == "ClusterRole"
    }


def _grants(role: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (resource, verb)
        for rule in role["rules"]
        if GROUP in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("persona", sorted(PERSONAS))
def test_persona_grants_exactly_its_operations(persona: str) -> None:
    role = _cluster_roles()[persona]  # the fixed name, whatever the release is called
    assert all(rule["apiGroups"] == [GROUP] for rule in role["rules"])
    allowed = {op for op, need in OPERATIONS.items() if need in _grants(role)}
    assert allowed == PERSONAS[persona]
    # nothing granted that no operation asks for
    assert _grants(role) <= set(OPERATIONS.values())


def test_every_operation_is_given_to_some_persona() -> None:
    assert set().union(*PERSONAS.values()) == set(OPERATIONS)


def test_admin_may_do_every_operation() -> None:
    assert _grants(_cluster_roles()["userservice-admin"]) == set(OPERATIONS.values())


def test_access_reviewer_holds_only_the_two_review_rules() -> None:
    role = _cluster_roles()["userservice-access-reviewer"]
    assert sorted((r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in role["rules"]) == [
        ("authentication.k8s.io", "tokenreviews", ("create",)),
        ("authorization.k8s.io", "subjectaccessreviews", ("create",)),
    ]
