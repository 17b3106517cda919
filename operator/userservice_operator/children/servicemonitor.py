"""ServiceMonitor (monitoring.coreos.com/v1) scraping /metrics on the `management` port; over HTTPS under
spec.tls, checking the certificate against the TLS Secret's ca.crt and the Service's DNS name."""

from __future__ import annotations

from typing import Any

from userservice_operator.children.common import metadata, scheme, selector_labels, with_hash
from userservice_operator.children.context import BuildContext
from userservice_operator.spec import Manifest, UserService


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest | None:
    """The ServiceMonitor, or None when disabled. Whether its CRD exists is decided by the caller."""
    sm = us.spec.monitoring.service_monitor
    if not sm.enabled:
        return None
    meta = metadata(us, us.name, "monitoring")
    meta["labels"] = {**sm.labels, **meta["labels"]}
    endpoint: dict[str, Any] = {
        "port": "management",
        "path": "/metrics",
        "interval": sm.interval,
        "scheme": scheme(us),
    }
    if us.spec.tls is not None:
        endpoint["tlsConfig"] = {
            "ca": {"secret": {"name": us.spec.tls.secret_name, "key": "ca.crt"}},
            "serverName": f"{us.name}.{us.namespace}.svc",
        }
    return with_hash(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": selector_labels(us)},
                "namespaceSelector": {"matchNames": [us.namespace]},
                "endpoints": [endpoint],
            },
        }
    )
