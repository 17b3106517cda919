"""`Kube`: a thin async wrapper over the kubernetes client's ApiClient, and the API paths of every kind used.

Blocking calls run in threads, each with a timeout so a restarted API server never hangs a reconcile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from userservice_operator.children import CHILDREN
from userservice_operator.crd import API_VERSION, KIND, PLURAL, SUBSCRIPTION_KIND, SUBSCRIPTION_PLURAL
from userservice_operator.metrics import OperatorMetrics
from userservice_operator.spec import Manifest

FIELD_MANAGER = "userservice-operator"
TIMEOUT = (5.0, 30.0)  # connect, read


@dataclass(frozen=True)
class Resource:
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


# The children's kinds come from their table; the rest are what the operator reads or writes beside them.
KINDS: Mapping[str, Resource] = MappingProxyType(
    {
        **{c.kind: Resource(c.api_version, c.plural, c.namespaced) for c in CHILDREN},
        "Secret": Resource("v1", "secrets"),
        "Event": Resource("v1", "events"),
        "Lease": Resource("coordination.k8s.io/v1", "leases"),
        "Namespace": Resource("v1", "namespaces", namespaced=False),
        KIND: Resource(API_VERSION, PLURAL),
        SUBSCRIPTION_KIND: Resource(API_VERSION, SUBSCRIPTION_PLURAL),
        "CustomResourceDefinition": Resource(
            "apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False
        ),
    }
)


class Kube:
    """Async access to the API server through one kubernetes ApiClient."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        metrics: OperatorMetrics | None = None,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self.api = api_client
        self.metrics = metrics
        self.timeout = timeout  # (connect, read) seconds of every request

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs)[1]

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """(HTTP status, decoded body) of one request."""
        try:
            method, url, headers, body, post = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method, url, headers, body, post, _request_timeout=self.timeout)
            data = response.read()  # type: ignore[no-untyped-call]
            text = data.decode("utf-8") if data else ""
            if not 200 <= response.status <= 299:
                raise ApiException.from_response(http_resp=response, body=text, data=None)
            return response.status, json.loads(text) if text else {}
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

    async def list(
        self, kind: str, namespace: str | None, label_selector: str = "", *, cached: bool = False
    ) -> list[Manifest]:
        """`cached`: any version the API server's watch cache holds (resourceVersion=0), without waiting for
        that cache to be as current as etcd."""
        query = [("labelSelector", label_selector)] if label_selector else []
        if cached:
            query.append(("resourceVersion", "0"))
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

    async def server_side_apply(self, manifest: Manifest) -> tuple[Manifest, bool]:
        """The object as applied, and whether the apply created it (201)."""
        kind = KINDS[manifest["kind"]]
        meta = manifest["metadata"]
        status, result = await asyncio.to_thread(
            self._send,
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            body=json.dumps(manifest),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        return dict(result), status == 201

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> Manifest:
        result = await self.request(
            "PATCH",
            KINDS[kind].path(namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        return dict(result)
