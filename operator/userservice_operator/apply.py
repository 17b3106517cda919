"""The one generic write path: server-side apply under one field manager, skipped when nothing changed.

`apply` compares the desired manifest with
the live object first: when every desired field already has its value and the applied-hash annotation
matches, no request is made; otherwise one PATCH with `application/apply-patch+yaml` and `force=true`
restores exactly the fields this manager owns and leaves other managers' fields (e.g. an HPA's replicas)
alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from userservice_operator.children.common import HASH_ANNOTATION
from userservice_operator.kube import Kube
from userservice_operator.spec import Manifest


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field of `desired` has the same value in `live` (lists element-wise, same length)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, x) for d, x in zip(desired, live, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return desired == live
    return desired == live or str(desired) == str(live)


def up_to_date(desired: Manifest, live: Manifest | None) -> bool:
    """True when applying `desired` would change nothing we own (same hash, all fields present)."""
    if live is None:
        return False
    want = (desired["metadata"].get("annotations") or {}).get(HASH_ANNOTATION)
    have = (live["metadata"].get("annotations") or {}).get(HASH_ANNOTATION)
    if want != have:
        return False
    body = {k: v for k, v in desired.items() if k not in ("status",)}
    return is_subset(body, live)


@dataclass(frozen=True)
class ApplyResult:
    """The live object after the step, and what happened: unchanged, created or configured."""

    live: Manifest
    action: str


async def apply(
    kube: Kube, desired: Manifest, live: Manifest | None = None, *, fetched: bool = False
) -> ApplyResult:
    """Make the live object match `desired` with one SSA request, or none when already up to date. `fetched`:
    `live` is already known (None: absent, or not looked up because the apply is wanted anyway)."""
    meta = desired["metadata"]
    if not fetched:
        live = await kube.get(desired["kind"], meta.get("namespace"), meta["name"])
    if live is not None and up_to_date(desired, live):
        return ApplyResult(live, "unchanged")
    result, created = await kube.server_side_apply(desired)
    action = "created" if created else "configured"
    if kube.metrics is not None:
        kube.metrics.child_writes.labels(desired["kind"], action).inc()
    return ApplyResult(result, action)
