"""The Kubernetes API calls the service makes, over aiohttp: TokenReview and SubjectAccessReview (access), and
for push delivery: list its namespace's UserEventSubscriptions, read a signing Secret by name, patch a
subscription's status.

In a pod: the in-cluster config (KUBERNETES_SERVICE_HOST/PORT, the mounted ServiceAccount token, re-read as the
kubelet rotates it, and the cluster CA). Elsewhere: the current context of KUBECONFIG (a token, a token file
or a client certificate; the cluster CA is always verified).
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from userservice import jsoncodec
from userservice.config import ConfigError
from userservice.domain.errors import DomainError

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0  # the kubelet renews a projected token well before it expires
TIMEOUT_SECONDS = 5.0
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 # a path
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


class AccessUnavailable(DomainError):
    """The Kubernetes API could not be asked who the caller is or what it may do."""


class KubeUnavailable(Exception):
    """The Kubernetes API could not be reached or refused a read or write (the message names the path)."""


class _TokenFile:
    """A bearer token read from a file, re-read now and then (rotation)."""

    def __init__(self, path: Path) -> None:
        self._path, self._token, self._read_at = path, "", -TOKEN_REREAD_SECONDS

    def __call__(self) -> str:
        if time.monotonic() - self._read_at >= TOKEN_REREAD_SECONDS:
            self._token, self._read_at = self._path.read_text().strip(), time.monotonic()
        return self._token


@dataclass
class Endpoint:
    server: str
    ssl: ssl.SSLContext
    token: _TokenFile | str | None


def in_cluster() -> Endpoint | None:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (SERVICE_ACCOUNT_DIR / "token").is_file():
        return None
    host = f"[{host}]" if ":" in host else host
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
    return Endpoint(f"https://{host}:{port}", context, _TokenFile(SERVICE_ACCOUNT_DIR / "token"))


def _named(items: list[dict[str, Any]], name: str, kind: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(kind) or {})
    raise ConfigError(f"KUBECONFIG has no {kind} named {name!r}")


def _pem(entry: dict[str, Any], name: str, base: Path) -> bytes | None:
    """The PEM a kubeconfig entry names, inline (`<name>-data`, base64) or as a file relative to the kubeconfig."""
    if entry.get(f"{name}-data"):
        return base64.b64decode(entry[f"{name}-data"])
    return (base / entry[name]).read_bytes() if entry.get(name) else None


def _load_client_certificate(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl loads a certificate chain only from files: a private temporary one, removed at once."""
    with tempfile.TemporaryDirectory(prefix="kubeconfig-") as directory:
        path = Path(directory) / "client.pem"
        path.touch(mode=0o600)
        path.write_bytes(cert + b"\n" + key)
        context.load_cert_chain(path)


def from_kubeconfig(path: str) -> Endpoint:
    """The current context of a kubeconfig file: only what the two calls need."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"KUBECONFIG {path}: {exc}") from None
    base = Path(path).parent
    context = _named(document.get("contexts"), document.get("current-context", ""), "context")
    cluster = _named(document.get("clusters"), context.get("cluster", ""), "cluster")
    user = _named(document.get("users"), context.get("user", ""), "user")
    if not str(cluster.get("server", "")).startswith("https://"):
        raise ConfigError(f"KUBECONFIG {path}: the cluster server must be an https:// URL")
    try:
        ca = _pem(cluster, "certificate-authority", base)
        tls = ssl.create_default_context(cadata=None if ca is None else ca.decode())
        cert, key = _pem(user, "client-certificate", base), _pem(user, "client-key", base)
        if cert and key:
            _load_client_certificate(tls, cert, key)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise ConfigError(f"KUBECONFIG {path}: {exc}") from None
    token: _TokenFile | str | None = user.get("token")
    if not token and user.get("tokenFile"):
        token = _TokenFile(base / user["tokenFile"])
    if not token and not cert:
        raise ConfigError(f"KUBECONFIG {path}: the user needs a token, tokenFile or client certificate")
    return Endpoint(cluster["server"].rstrip("/"), tls, token)


def endpoint(kubeconfig: str) -> Endpoint | None:
    """The in-cluster ServiceAccount in a pod, else KUBECONFIG's current context, else None."""
    return in_cluster() or (from_kubeconfig(kubeconfig) if kubeconfig else None)


class KubeApi:
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self._endpoint.server,
                connector=aiohttp.TCPConnector(ssl=self._endpoint.ssl, limit=32),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
                json_serialize=lambda value: jsoncodec.dumps(value).decode(),
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        token = self._endpoint.token
        if token is None:
            return {}
        return {"Authorization": f"Bearer {token if isinstance(token, str) else token()}"}

    async def get(self, path: str) -> dict[str, Any] | None:
        """GETs an object or list; None when it does not exist. Never logs the body: a Secret's holds its data."""
        try:
            async with self._client().get(path, headers=self._headers()) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise KubeUnavailable(f"GET {path}: the Kubernetes API answered {response.status}")
                answer: dict[str, Any] = await response.json()
                return answer
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise KubeUnavailable(f"GET {path}: {type(exc).__name__}") from None

    async def merge_patch(self, path: str, body: dict[str, Any]) -> bool:
        """Merge-patches an object (a status subresource); False when it no longer exists."""
        headers = {**self._headers(), "Content-Type": "application/merge-patch+json"}
        try:
            async with self._client().patch(path, data=jsoncodec.dumps(body), headers=headers) as response:
                if response.status == 404:
                    return False
                if response.status != 200:
                    raise KubeUnavailable(f"PATCH {path}: the Kubernetes API answered {response.status}")
                return True
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeUnavailable(f"PATCH {path}: {type(exc).__name__}") from None

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POSTs a review and returns its status. Never logs the body: a TokenReview's holds the token."""
        try:
            async with self._client().post(path, json=body, headers=self._headers()) as response:
                if response.status != 201 and response.status != 200:
                    log.warning(
                        "kubernetes API refused a review",
                        extra={"path": path, "status": response.status},
                    )
                    raise AccessUnavailable("the Kubernetes API refused to review the caller; retry later")
                answer: dict[str, Any] = await response.json()
                return dict(answer.get("status") or {})
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.warning("kubernetes API unreachable", extra={"path": path, "error": type(exc).__name__})
            raise AccessUnavailable(
                "the Kubernetes API cannot be reached to review the caller; retry later"
            ) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
