"""The CRDs, loaded from crd.yaml (UserService) and subscription_crd.yaml (UserEventSubscription): the one
source of each, which the chart ships and the tests install."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

GROUP = "userservice.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "UserService"
PLURAL = "userservices"
CRD_NAME = f"{PLURAL}.{GROUP}"
SUBSCRIPTION_KIND = "UserEventSubscription"
SUBSCRIPTION_PLURAL = "usereventsubscriptions"
SUBSCRIPTION_CRD_NAME = f"{SUBSCRIPTION_PLURAL}.{GROUP}"
SUBSCRIPTION_CRD_FILE = "subscription_crd.yaml"


def crd_text() -> str:
    """The CRD exactly as shipped (YAML)."""
    return (resources.files(__package__) / "crd.yaml").read_text(encoding="utf-8")


def load_crd() -> dict[str, Any]:
    """The CRD manifest as a dict."""
    doc = yaml.safe_load(crd_text())
    assert isinstance(doc, dict)
    return doc


def subscription_crd_text() -> str:
    """The UserEventSubscription CRD exactly as shipped (YAML)."""
    return (resources.files(__package__) / SUBSCRIPTION_CRD_FILE).read_text(encoding="utf-8")


def load_subscription_crd() -> dict[str, Any]:
    doc = yaml.safe_load(subscription_crd_text())
    assert isinstance(doc, dict)
    return doc


def rbac_text() -> str:
    """The operator's least-privilege RBAC (YAML, several documents)."""
    return (resources.files(__package__) / "rbac.yaml").read_text(encoding="utf-8")


def load_rbac() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rbac_text()) if d]
