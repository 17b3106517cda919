"""What every builder takes beside the UserService: the rollout plan and the operator's settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from userservice_operator.children.promql import RUNBOOKS
from userservice_operator.spec import Manifest, UserService


@dataclass(frozen=True)
class RolloutPlan:
    """What the Deployment may run: the image, and a replica override (None: the normal rules)."""

    image: str
    replicas: int | None
    held: bool


@dataclass(frozen=True)
class BuildContext:
    """What builders take beside the UserService: the rollout plan (None before it is known; only the workload
    kinds look at it) and the operator's settings that shape children."""

    plan: RolloutPlan | None = None
    runbooks: str = RUNBOOKS  # where docs/runbooks.md is published (alerts link their section)
    # The Secrets named by spec.signingSecretRef of the UserEventSubscriptions naming this UserService.
    signing_secrets: tuple[str, ...] = ()


Builder = Callable[[UserService, BuildContext | None], Manifest | None]
