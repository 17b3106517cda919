"""The schema-migration Job (`userservice migrate`) and the pure rules around it.

The Job's name carries a hash of what can change the schema a migration leaves: the image (its migrations)
and the database it migrates (the DSN's Secret and libpq's PG* variables of spec.env). A new image gets a new
Job; the log level, other variables and the Job's limits run none. Jobs (whose pod template is immutable) are
never patched in place: a Job keeps the settings it was made with. The Deployment rolls to an image only after
that image's Job succeeded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from userservice_operator.children.common import MIGRATION_HASH_LABEL, canonical_hash, metadata, with_hash
from userservice_operator.children.context import BuildContext, RolloutPlan
from userservice_operator.children.env import base_env, database_secret
from userservice_operator.children.security import pod_security_context, security_context
from userservice_operator.spec import Manifest, UserService

COMPONENT = "migration"


# spec.env variables that choose the database or how `userservice migrate` connects to it: asyncpg takes
# libpq's PGHOST, PGDATABASE, PGUSER, PGSSLMODE, ... where DATABASE_URL leaves them out.
MIGRATION_ENV_PREFIX = "PG"


def migration_hash(us: UserService) -> str:
    """A hash of what can change the schema a migration leaves (see the module docstring)."""
    secret, key = database_secret(us)
    relevant = {
        "image": us.spec.image,
        "database": {"secret": secret, "key": key},
        "env": [dict(e) for e in us.spec.env if str(e["name"]).startswith(MIGRATION_ENV_PREFIX)],
    }
    return canonical_hash(relevant, 10)


def job_name(us: UserService) -> str:
    return f"{us.name}-migrate-{migration_hash(us)}"


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest:
    spec = us.spec
    meta = metadata(us, job_name(us), COMPONENT, spec.image)
    meta["labels"][MIGRATION_HASH_LABEL] = migration_hash(us)
    container: dict[str, Any] = {
        "name": "migrate",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["userservice"],  # explicit: independent of the image's ENTRYPOINT/CMD
        "args": ["migrate"],
        "env": [*base_env(us), *(dict(e) for e in spec.env)],
        "resources": dict(spec.resources),
        "securityContext": security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir, read-only root
    }
    pod_labels = dict(meta["labels"])
    return with_hash(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {
                "backoffLimit": spec.migrations.backoff_limit,
                "activeDeadlineSeconds": spec.migrations.active_deadline_seconds,
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": pod_security_context(),
                        "containers": [container],
                        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                        **spec.pod.scheduling(),
                    },
                },
            },
        }
    )


class JobPhase(enum.Enum):
    DISABLED = "Disabled"
    PENDING = "Pending"  # not created yet (e.g. waiting for the Secret)
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class MigrationState:
    phase: JobPhase
    job: str = ""
    message: str = ""


def job_state(job: Manifest | None) -> MigrationState:
    """Phase of a live migration Job from its status conditions."""
    if job is None:
        return MigrationState(JobPhase.PENDING)
    name = str(job["metadata"]["name"])
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return MigrationState(JobPhase.SUCCEEDED, name, f"Job {name} completed")
        if cond.get("type") == "Failed":
            detail = cond.get("message") or cond.get("reason") or "failed"
            return MigrationState(JobPhase.FAILED, name, f"Job {name} failed: {detail}")
    return MigrationState(JobPhase.RUNNING, name, f"Job {name} is running")


def plan_rollout(
    us: UserService, migration: MigrationState, live_image: str | None, live_replicas: int | None = None
) -> RolloutPlan:
    """Decide the Deployment's image: the new image only once its migration succeeded (or is disabled).

    Before that, a Deployment that exists keeps its current image; a first Deployment is made with the new
    image at zero replicas (and no HPA), so no pod runs against an unmigrated schema. A Deployment already
    running the image (only other settings changed) is not held.
    """
    image = us.spec.image
    if migration.phase in (JobPhase.DISABLED, JobPhase.SUCCEEDED):
        return RolloutPlan(image, None, held=False)
    if live_image and live_image != image:
        return RolloutPlan(live_image, None, held=True)
    if live_image == image and live_replicas != 0:
        return RolloutPlan(image, None, held=False)
    return RolloutPlan(image, 0, held=True)
