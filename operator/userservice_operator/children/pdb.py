"""PodDisruptionBudget (policy/v1) of the service's pods."""

from __future__ import annotations

from typing import Any

from userservice_operator.children.common import (
    Manifest,
    metadata,
    name_of,
    selector_labels,
    spec_of,
    with_hash,
)


def build(us: Manifest) -> Manifest | None:
    """The PDB, or None when spec.podDisruptionBudget.enabled is false. Default: maxUnavailable 1."""
    pdb = spec_of(us).get("podDisruptionBudget") or {}
    if not pdb.get("enabled", True):
        return None
    pdb_spec: dict[str, Any] = {"selector": {"matchLabels": selector_labels(us)}}
    if "minAvailable" in pdb:
        pdb_spec["minAvailable"] = pdb["minAvailable"]
    else:
        pdb_spec["maxUnavailable"] = pdb.get("maxUnavailable", 1)
    return with_hash(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(us, name_of(us), "server"),
            "spec": pdb_spec,
        }
    )
