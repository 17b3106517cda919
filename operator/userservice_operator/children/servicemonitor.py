"""ServiceMonitor (monitoring.coreos.com/v1) scraping /metrics on the `http` port."""

from __future__ import annotations

from userservice_operator.children.common import (
    BuildContext,
    metadata,
    selector_labels,
    with_hash,
)
from userservice_operator.spec import Manifest, UserService


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest | None:
    """The ServiceMonitor, or None when disabled. Whether its CRD exists is decided by the caller."""
    sm = us.spec.monitoring.service_monitor
    if not sm.enabled:
        return None
    meta = metadata(us, us.name, "monitoring")
    meta["labels"] = {**sm.labels, **meta["labels"]}
    return with_hash(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": selector_labels(us)},
                "namespaceSelector": {"matchNames": [us.namespace]},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": sm.interval}],
            },
        }
    )
