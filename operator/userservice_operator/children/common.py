"""Shared pieces of the child manifests: names, labels, owner references, the applied-hash annotation."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

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


# The chart-shipped ClusterRole that may only create TokenReviews and SubjectAccessReviews; each UserService's
# ServiceAccount is bound to it (children/accessbinding.py), and the operator may bind exactly this role.
ACCESS_REVIEWER_ROLE = "userservice-access-reviewer"
