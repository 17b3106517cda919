"""ServiceMonitor (monitoring.coreos.com/v1) scraping /metrics on the `http` port."""

from __future__ import annotations

from userservice_operator.children.common import (
    Manifest,
    metadata,
    name_of,
    selector_labels,
    spec_of,
    with_hash,
)


def build(us: Manifest) -> Manifest | None:
    """The ServiceMonitor, or None when disabled. Whether its CRD exists is decided by the caller."""
    sm = (spec_of(us).get("monitoring") or {}).get("serviceMonitor") or {}
    if not sm.get("enabled", True):
        return None
    meta = metadata(us, name_of(us), "monitoring")
    meta["labels"] = {**(sm.get("labels") or {}), **meta["labels"]}
    return with_hash(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": selector_labels(us)},
                "namespaceSelector": {"matchNames": [us["metadata"]["namespace"]]},
                "endpoints": [
                    {"port": "http", "path": "/metrics", "interval": str(sm.get("interval", "30s"))}
                ],
            },
        }
    )
