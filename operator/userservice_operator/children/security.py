"""The security contexts of every pod and container the operator makes: the 'restricted' Pod Security Standard."""

from __future__ import annotations

from typing import Any


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
