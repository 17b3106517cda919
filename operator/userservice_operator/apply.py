"""The one generic write path: server-side apply under one field manager, skipped when nothing changed.

`Kube` is a thin async wrapper over the kubernetes client's ApiClient (blocking calls run in threads, each
with a timeout so a restarted API server never hangs a reconcile). `apply` compares the desired manifest with
the live object first: when every desired field already has its value and the applied-hash annotation
matches, no request is made; otherwise one PATCH with `application/apply-patch+yaml` and `force=true`
restores exactly the fields this manager owns and leaves other managers' fields (e.g. an HPA's replicas)
alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from userservice_operator.children.common import HASH_ANNOTATION, Manifest
from userservice_operator.metrics import OperatorMetrics

FIELD_MANAGER = "userservice-operator"
TIMEOUT = (5.0, 30.0)  # connect, read
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/".join(parts)


KINDS: dict[str, Kind] = {
    "Deployment": Kind("apps/v1", "deployments"),
    "Service": Kind("v1", "services"),
    "HorizontalPodAutoscaler": Kind("autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": Kind("policy/v1", "poddisruptionbudgets"),
    "Job": Kind("batch/v1", "jobs"),
    "ServiceMonitor": Kind("monitoring.coreos.com/v1", "servicemonitors"),
    "PrometheusRule": Kind("monitoring.coreos.com/v1", "prometheusrules"),
    "Secret": Kind("v1", "secrets"),
    "Event": Kind("v1", "events"),
    "Lease": Kind("coordination.k8s.io/v1", "leases"),
    "UserService": Kind("userservice.io/v1alpha1", "userservices"),
    "CustomResourceDefinition": Kind(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False
    ),
}


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


class Kube:
    """Async access to the API server through one kubernetes ApiClient."""

    def __init__(self, api_client: k8s_client.ApiClient, metrics: OperatorMetrics | None = None) -> None:
        self.api = api_client
        self.metrics = metrics

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        try:
            method, url, headers, body, post = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method, url, headers, body, post, _request_timeout=TIMEOUT)
            data = response.read()  # type: ignore[no-untyped-call]
            text = data.decode("utf-8") if data else ""
            if not 200 <= response.status <= 299:
                raise ApiException.from_response(http_resp=response, body=text, data=None)
            return json.loads(text) if text else {}
        except ApiException as exc:
            if self.metrics is not None and exc.status != 404:
                self.metrics.api_errors.labels(method, str(exc.status)).inc()
            raise
        except Exception:
            if self.metrics is not None:
                self.metrics.api_errors.labels(method, "connection").inc()
            raise

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._call, method, path, **kwargs)

    async def get(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        try:
            result = await self.request("GET", KINDS[kind].path(namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(result)

    async def list(self, kind: str, namespace: str | None, label_selector: str = "") -> list[Manifest]:
        query = [("labelSelector", label_selector)] if label_selector else []
        result = await self.request("GET", KINDS[kind].path(namespace), query=query)
        return list(result.get("items") or [])

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete (background propagation). False when it was already gone."""
        try:
            await self.request(
                "DELETE",
                KINDS[kind].path(namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def create(self, kind: str, namespace: str | None, body: Manifest) -> Manifest:
        return dict(await self.request("POST", KINDS[kind].path(namespace), body=body))

    async def replace(self, kind: str, namespace: str | None, name: str, body: Manifest) -> Manifest:
        return dict(await self.request("PUT", KINDS[kind].path(namespace, name), body=body))

    async def server_side_apply(self, manifest: Manifest) -> Manifest:
        kind = KINDS[manifest["kind"]]
        meta = manifest["metadata"]
        result = await self.request(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            body=json.dumps(manifest),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        return dict(result)

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> Manifest:
        result = await self.request(
            "PATCH",
            KINDS[kind].path(namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        return dict(result)


@dataclass(frozen=True)
class ApplyResult:
    """The live object after the step, and what happened: unchanged, created or configured."""

    live: Manifest
    action: str


async def apply(
    kube: Kube, desired: Manifest, live: Manifest | None = None, *, fetched: bool = False
) -> ApplyResult:
    """Make the live object match `desired` with one SSA request, or none when already up to date."""
    meta = desired["metadata"]
    if not fetched:
        live = await kube.get(desired["kind"], meta.get("namespace"), meta["name"])
    if live is not None and up_to_date(desired, live):
        return ApplyResult(live, "unchanged")
    result = await kube.server_side_apply(desired)
    if kube.metrics is not None:
        kube.metrics.child_writes.labels(desired["kind"], "created" if live is None else "configured").inc()
    return ApplyResult(result, "created" if live is None else "configured")
