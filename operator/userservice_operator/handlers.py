"""kopf registrations only: watch streams feed the Controller (runtime.py), which does the work.

Everything is registered on a registry made per operator run (no module-level state). No handler here
is a change-detecting (create/update) handler, so kopf writes no annotations or finalizers of its own:
an idle UserService causes no writes.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import kopf

from userservice_operator.children import WATCHED_CHILDREN, Child
from userservice_operator.crd import GROUP, PLURAL, SUBSCRIPTION_PLURAL, VERSION
from userservice_operator.reconcile import CHILD_SELECTOR, child_owner, subscription_owner
from userservice_operator.runtime import Controller


def _controller(memo: Any) -> Controller:
    ctl = memo.controller
    assert isinstance(ctl, Controller)
    return ctl


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """Watch timeouts so streams never hang after an API server restart or on a silent connection; no
    kopf-side writes; a bounded exit."""
    settings.watching.server_timeout = 60  # the API server ends each watch after 60 s
    settings.watching.client_timeout = 75  # ... and the client gives up shortly after if it does not
    settings.watching.connect_timeout = 5
    settings.watching.reconnect_backoff = 1.0
    settings.watching.inactivity_timeout = 70
    settings.networking.connect_timeout = 5
    settings.networking.request_timeout = 30
    settings.posting.enabled = False  # our own Events are posted by events.Recorder
    # kopf SIGKILLs the process this long after it stopped for any reason but its stop flag. The operator's own
    # exit comes first (process.lead: the workers stopped within 10 s, the Lease released within 10 s) and releases
    # the Lease; this is the backstop should that exit hang. kopf's default, 600 s, would leave a failed leader
    # in place for ten minutes.
    settings.process.ultimate_exiting_timeout = 60
    for child in WATCHED_CHILDREN:
        settings.watching.label_selectors[child.group, child.version, child.plural] = CHILD_SELECTOR


def register(
    registry: kopf.OperatorRegistry, connection: kopf.ConnectionInfo | None
) -> kopf.OperatorRegistry:
    """Register every handler on `registry`; `connection` None means in-cluster (service account)."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if connection is not None:
            return connection
        result = kopf.login_with_service_account(**kwargs)
        return result

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: Any, **_: Any) -> None:
        await _controller(memo).stop()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def userservice_event(event: Any, memo: Any, **_: Any) -> None:
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if event.get("type") == "DELETED" or meta.get("deletionTimestamp"):
            _controller(memo).forget(meta.get("namespace", ""), meta.get("name", ""))
            await _controller(memo).collect(meta.get("namespace", ""), meta.get("name", ""))
            return
        _controller(memo).observe(copy.deepcopy(obj))

    # A subscription's signing Secret is one its UserService's pods may read (children/subscriptionaccess.py):
    # any change to a subscription is a pass of the UserService it names.
    @kopf.on.event(GROUP, VERSION, SUBSCRIPTION_PLURAL, registry=registry, id="subscriptions")
    async def subscription_event(event: Any, memo: Any, **_: Any) -> None:
        owner = subscription_owner(event.get("object") or {})
        if owner is not None:
            _controller(memo).kick(*owner)

    # The optional kinds are not watched: their CRDs can vanish under a watch (runtime.Controller polls them).
    for child in WATCHED_CHILDREN:

        @kopf.on.event(
            child.group, child.version, child.plural, registry=registry, id=f"child-{child.plural}"
        )
        async def child_event(event: Any, memo: Any, _child: Child = child, **_: Any) -> None:
            obj = event.get("object") or {}
            owner = child_owner(obj)
            if owner is None:
                return
            ctl = _controller(memo)
            if not _child.namespaced and owner not in ctl.workers:
                await ctl.collect(*owner)  # no UserService seen for it (yet): gone, or not listed yet
            meta = obj.get("metadata") or {}
            version = None if event.get("type") == "DELETED" else meta.get("resourceVersion")
            seen = (str(obj.get("kind")), str(meta.get("name")), str(version)) if version else None
            ctl.kick(*owner, seen)

    logging.getLogger(__name__).debug("handlers registered")
    return registry
