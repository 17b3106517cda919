"""core/v1 Events about a UserService: the recorder (best effort), and which status changes are news."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from userservice_operator import status as status_mod
from userservice_operator.crd import API_VERSION, KIND
from userservice_operator.kube import Kube
from userservice_operator.spec import Manifest

log = logging.getLogger(__name__)


class Recorder:
    """Posts core/v1 Events about a UserService."""

    def __init__(self, kube: Kube, component: str) -> None:
        self.kube = kube
        self.component = component
        self.host = socket.gethostname()

    async def event(self, us: Manifest, kind: str, reason: str, message: str) -> None:
        ts = status_mod.now()
        meta = us["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": f"{self.host}-{os.getpid()}",
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        try:
            await self.kube.create("Event", meta["namespace"], body)
        except Exception as exc:  # events are best effort
            log.warning("could not post event %s: %s", reason, exc)


def condition_events(
    before: dict[str, dict[str, Any]], conditions: list[dict[str, Any]]
) -> list[tuple[str, str, str]]:
    """Events worth posting for a status change: Ready changed, Degraded raised or cleared."""
    events = []
    for cond in conditions:
        prev = before.get(cond["type"]) or {}
        text = f"{cond['type']}={cond['status']}: {cond['message']}"
        if cond["type"] == status_mod.READY and (
            prev.get("status") != cond["status"]
            or (cond["status"] == "False" and prev.get("reason") != cond["reason"])
        ):
            events.append(("Normal", cond["reason"], text))
        if cond["type"] == status_mod.DEGRADED:
            if cond["status"] == "True" and (
                prev.get("status") != "True" or prev.get("reason") != cond["reason"]
            ):
                events.append(("Warning", cond["reason"], text))
            elif cond["status"] == "False" and prev.get("status") == "True":
                events.append(("Normal", "Recovered", text))
    return events
