"""Shared pieces of the child manifests: names, labels, owner references, the applied-hash annotation."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from userservice_operator.children.promql import RUNBOOKS
from userservice_operator.crd import API_VERSION, KIND
from userservice_operator.spec import Manifest, UserService

MANAGED_BY = "userservice-operator"
APP_NAME = "userservice"
HASH_ANNOTATION = "userservice.io/applied-hash"
MIGRATION_HASH_LABEL = "userservice.io/migration-hash"
# On cluster-scoped children (no ownerReference possible): the owner's namespace; its name is the instance label.
OWNER_NAMESPACE_LABEL = "userservice.io/namespace"


def _label_value(text: str) -> str:
    """A string made into a valid label value (<= 63 chars, alphanumerics at the ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63]
    return value.strip("-_.")


def image_tag(image: str) -> str:
    """The tag (or digest prefix) of an image reference, for the app.kubernetes.io/version label."""
    if "@" in image:
        return image.split("@", 1)[1].replace("sha256:", "")[:12]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def selector_labels(us: UserService) -> dict[str, str]:
    """Labels selecting the serving pods (immutable in the Deployment: never change these).

    The component is part of it, so the migration Job's pods never match the Service, PDB or Deployment.
    """
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": us.name,
        "app.kubernetes.io/component": "server",
    }


def labels(us: UserService, component: str, image: str | None = None) -> dict[str, str]:
    result = {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": us.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": APP_NAME,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    if image:
        version = _label_value(image_tag(image))
        if version:
            result["app.kubernetes.io/version"] = version
    return result


def owner_reference(us: UserService) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": us.name,
        "uid": us.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def scheme(us: UserService) -> str:
    """HTTP scheme of the REST and management ports."""
    return "https" if us.spec.tls_enabled() else "http"


def metadata(us: UserService, name: str, component: str, image: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": us.namespace,
        "labels": labels(us, component, image),
        "ownerReferences": [owner_reference(us)],
    }


def owner_selector(namespace: str, name: str) -> str:
    """Label selector of the cluster-scoped children of one UserService."""
    return f"app.kubernetes.io/instance={name},{OWNER_NAMESPACE_LABEL}={namespace},app.kubernetes.io/managed-by={MANAGED_BY}"


def canonical_hash(obj: Any, length: int = 16) -> str:
    """A stable short hash of a JSON-able value."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def with_hash(manifest: Manifest) -> Manifest:
    """The manifest with the applied-hash annotation (a hash of everything else) added."""
    meta = manifest["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != HASH_ANNOTATION}
    body = {**manifest, "metadata": {**meta, "annotations": annotations}}
    return {
        **manifest,
        "metadata": {**meta, "annotations": {**annotations, HASH_ANNOTATION: canonical_hash(body)}},
    }


# Every environment variable the operator sets itself, and where its value comes from. crd.yaml reserves exactly
# these (the CEL rule on each spec.env entry is `reserved_env_validation()`; a unit test keeps the two equal): a
# duplicate name would make the API server refuse the Deployment and the Job.
OPERATOR_ENV: Mapping[str, str] = MappingProxyType(
    {
        "DATABASE_URL": "from spec.database",
        "LOG_LEVEL": "from spec.logLevel",
        "HTTP_PORT": "from spec.http.port",
        "GRPC_PORT": "from spec.grpc.port",
        "SHUTDOWN_GRACE_SECONDS": "from spec.shutdownGracePeriodSeconds",
        "MANAGEMENT_PORT": "from spec.management.port",
        "AUTH_MODE": "to kubernetes (authentication cannot be switched off)",
        "AUTH_AUDIENCE": "from spec.auth.audience",
        "AUTH_NAMESPACE": "to the namespace of the UserService",
        "AUTH_CACHE_SECONDS": "from spec.auth.cacheSeconds",
        "TLS_CERT_FILE": "from spec.tls",
        "TLS_KEY_FILE": "from spec.tls",
    }
)
# Where the spec.tls Secret is mounted (the service reads the pair from TLS_CERT_FILE / TLS_KEY_FILE).
TLS_DIR = "/etc/userservice/tls"
# The chart-shipped ClusterRole that may only create TokenReviews and SubjectAccessReviews; each UserService's
# ServiceAccount is bound to it (children/accessbinding.py), and the operator may bind exactly this role.
ACCESS_REVIEWER_ROLE = "userservice-access-reviewer"


def reserved_env_validation() -> dict[str, str]:
    """The CEL validation of each spec.env entry that refuses the operator's own variables, naming the one set."""
    names = ", ".join(f"'{n}'" for n in OPERATOR_ENV)
    how = ", ".join(f"'{n}': '{v}'" for n, v in OPERATOR_ENV.items())
    return {
        "rule": f"!(self.name in [{names}])",
        "fieldPath": ".name",
        "messageExpression": f"'spec.env must not set ' + self.name + ': the operator sets it ' + {{{how}}}[self.name]",
        "message": f"spec.env must not set a variable the operator sets ({', '.join(OPERATOR_ENV)})",
    }


def database_secret(us: UserService) -> tuple[str, str]:
    """(Secret name, key) holding DATABASE_URL: spec.database.secretRef, or CloudNativePG's `<cluster>-app`
    Secret, whose `uri` key is the read-write Service's DSN."""
    db = us.spec.database
    if db.cloud_native_pg is not None:
        return f"{db.cloud_native_pg.cluster_name}-app", "uri"
    assert db.secret_ref is not None  # the CRD requires one of the two
    return db.secret_ref.name, db.secret_ref.key


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def base_env(us: UserService) -> list[dict[str, Any]]:
    """Environment shared by the service container and the migration Job."""
    secret, key = database_secret(us)
    return [_secret_env("DATABASE_URL", secret, key), {"name": "LOG_LEVEL", "value": us.spec.log_level}]


# Set by the operator only with spec.database.cloudNativePG (reads) or maxConnections (pool sizes): the CRD's
# `conditional_env_rule()` keeps spec.env from setting them then.
CLOUDNATIVEPG_ENV = ("DATABASE_READ_URL", "PGUSER", "PGPASSWORD", "PGDATABASE")
BUDGET_ENV = ("DB_POOL_MAX", "DB_READ_POOL_MAX")


def database_env(us: UserService, pool: int | None) -> list[dict[str, Any]]:
    """The serving pods' read replicas and pool sizes.

    CloudNativePG: reads go to the `<cluster>-ro` Service. Its DSN carries no credentials: asyncpg takes the user,
    password and database a DSN leaves out from PGUSER, PGPASSWORD and PGDATABASE, set here from the same Secret
    by reference, so no secret is copied and no password needs URL-encoding. (DATABASE_URL, the Secret's `uri`,
    names all three itself.)
    """
    env: list[dict[str, Any]] = []
    cnpg = us.spec.database.cloud_native_pg
    if cnpg is not None:
        secret, _ = database_secret(us)
        env += [
            {
                "name": "DATABASE_READ_URL",
                "value": f"postgresql://{cnpg.cluster_name}-ro.{us.namespace}:5432",
            },
            _secret_env("PGUSER", secret, "username"),
            _secret_env("PGPASSWORD", secret, "password"),
            _secret_env("PGDATABASE", secret, "dbname"),
        ]
    if pool is not None:
        env += [{"name": "DB_POOL_MAX", "value": str(pool)}, {"name": "DB_READ_POOL_MAX", "value": str(pool)}]
    return env


def conditional_env_rule() -> str:
    """The CEL rule on spec that refuses spec.env entries the operator sets for this spec."""
    cnpg = ", ".join(f"'{n}'" for n in CLOUDNATIVEPG_ENV)
    budget = ", ".join(f"'{n}'" for n in BUDGET_ENV)
    return (
        f"!has(self.env) || self.env.all(e, !(has(self.database.cloudNativePG) && e.name in [{cnpg}])"
        f" && !(has(self.database.maxConnections) && e.name in [{budget}]))"
    )


def security_context() -> dict[str, Any]:
    """Container security context of the 'restricted' Pod Security Standard, read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


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


Builder = Callable[[UserService, BuildContext | None], Manifest | None]
