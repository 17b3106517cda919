"""ClusterRoleBinding of the UserService's ServiceAccount to the chart's `userservice-access-reviewer`, which
may only create TokenReviews and SubjectAccessReviews (both cluster-scoped, hence a cluster-scoped binding).

A cluster-scoped object cannot carry an ownerReference to a namespaced UserService, so the garbage collector
does not remove it: the labels below name its owner, and the operator deletes it when that UserService is gone
(runtime.Controller.collect).
"""

from __future__ import annotations

from userservice_operator.children import serviceaccount
from userservice_operator.children.common import (
    ACCESS_REVIEWER_ROLE,
    OWNER_NAMESPACE_LABEL,
    labels,
    with_hash,
)
from userservice_operator.children.context import BuildContext
from userservice_operator.spec import Manifest, UserService


def name(us: UserService) -> str:
    return f"{ACCESS_REVIEWER_ROLE}:{us.namespace}:{us.name}"


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest:
    return with_hash(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": name(us),
                "labels": {**labels(us, "access"), OWNER_NAMESPACE_LABEL: us.namespace},
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": ACCESS_REVIEWER_ROLE,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": serviceaccount.name(us), "namespace": us.namespace}
            ],
        }
    )
