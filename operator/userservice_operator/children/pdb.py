"""PodDisruptionBudget (policy/v1) of the service's pods."""

from __future__ import annotations

from typing import Any

from userservice_operator.children.common import metadata, selector_labels, with_hash
from userservice_operator.children.context import BuildContext
from userservice_operator.spec import Manifest, UserService

DEFAULT_MAX_UNAVAILABLE = 1


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest | None:
    """The PDB, or None when spec.podDisruptionBudget.enabled is false. Default: maxUnavailable 1."""
    pdb = us.spec.pod_disruption_budget
    if not pdb.enabled:
        return None
    pdb_spec: dict[str, Any] = {"selector": {"matchLabels": selector_labels(us)}}
    if pdb.min_available is not None:
        pdb_spec["minAvailable"] = pdb.min_available
    else:
        pdb_spec["maxUnavailable"] = (
            DEFAULT_MAX_UNAVAILABLE if pdb.max_unavailable is None else pdb.max_unavailable
        )
    return with_hash(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(us, us.name, "server"),
            "spec": pdb_spec,
        }
    )
