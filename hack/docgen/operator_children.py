"""The table of child kinds in docs/operator.md, from the operator's one table (children/__init__.py)."""

from __future__ import annotations

from hack.docgen.markers import splice
from userservice_operator.children import CHILDREN, Phase

PAGE = "docs/operator.md"
BLOCK = "child kinds"

WHEN = {
    Phase.SUPPORT: "every pass",
    Phase.SUBSCRIPTIONS: "every pass, once the UserEventSubscriptions naming it are listed (its rules name their signing Secrets)",
    Phase.BINDING: "every pass, after the Role (the API server checks a binding against the role it names)",
    Phase.MIGRATION: "once per migration hash, never patched",
    Phase.WORKLOAD: "once the database Secret exists, per the rollout plan",
}


def render(page: str) -> str:
    rows = [
        f"| {c.kind} | `{c.api_version}` | `{c.plural}` | `children/{c.build.__module__.rpartition('.')[2]}.py` "
        f"| {WHEN[c.phase]} | {'only where its CRD is Established; not watched, listed every `--crd-poll-seconds`' if c.optional_api else 'always served; watched'} |"
        for c in CHILDREN
    ]
    table = [
        "| kind | apiVersion | resource | builder | applied | API |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    return splice(page, BLOCK, "\n".join(table))
