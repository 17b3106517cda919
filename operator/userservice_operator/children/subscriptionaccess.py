"""Role and RoleBinding giving the UserService's ServiceAccount what push delivery needs, and nothing more: read
the namespace's UserEventSubscriptions, write their status, and get exactly the Secrets their
spec.signingSecretRef names (by name; no list, no watch).

The pods deliver the subscriptions themselves (docs/subscriptions.md says why), so they need this Role; the
Secrets' names come from the subscriptions naming this UserService (BuildContext.signing_secrets), kept in
step by the operator, which reconciles a UserService again whenever one of its subscriptions changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from userservice_operator.children import serviceaccount
from userservice_operator.children.common import metadata, with_hash
from userservice_operator.children.context import BuildContext
from userservice_operator.crd import GROUP, SUBSCRIPTION_PLURAL
from userservice_operator.spec import Manifest, UserService


def name(us: UserService) -> str:
    return f"{us.name}-subscriptions"


def rules(signing_secrets: Iterable[str]) -> list[dict[str, Any]]:
    """The Role's rules. Without any signing Secret there is no Secret rule at all: an empty resourceNames
    would grant every Secret of the namespace."""
    granted: list[dict[str, Any]] = [
        {"apiGroups": [GROUP], "resources": [SUBSCRIPTION_PLURAL], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [GROUP], "resources": [f"{SUBSCRIPTION_PLURAL}/status"], "verbs": ["patch", "update"]},
    ]
    secrets = sorted(set(signing_secrets))
    if secrets:
        granted.append(
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": secrets}
        )
    return granted


def build_role(us: UserService, ctx: BuildContext | None = None) -> Manifest:
    return with_hash(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(us, name(us), "server"),
            "rules": rules(ctx.signing_secrets if ctx is not None else ()),
        }
    )


def build_binding(us: UserService, ctx: BuildContext | None = None) -> Manifest:
    return with_hash(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(us, name(us), "server"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name(us)},
            "subjects": [
                {"kind": "ServiceAccount", "name": serviceaccount.name(us), "namespace": us.namespace}
            ],
        }
    )
