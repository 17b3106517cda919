"""The UserEventSubscription field reference of docs/subscriptions.md, from its CRD's schema (subscription_crd.yaml)."""

from __future__ import annotations

from hack.docgen.markers import splice
from hack.docgen.operator_spec import _rows
from userservice_operator.crd import load_subscription_crd

PAGE = "docs/subscriptions.md"
BLOCK = "UserEventSubscription fields"


def render(page: str) -> str:
    root = load_subscription_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    table = [
        "| field | type | default | description |",
        "|---|---|---|---|",
        *_rows(root["spec"], "spec"),
        *_rows(root["status"], "status"),
    ]
    return splice(page, BLOCK, "\n".join(table))
