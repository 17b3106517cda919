"""The namespaces kopf serves under `--namespace` patterns, listed again on every resync.

kopf 1.45's namespace observer lists the namespaces once, then starts its watch, which lists them again and
ignores that second listing's items (they carry no event type); the watch does the same each time it starts over
after a `410 Gone`. A matching namespace created between two such lists is never served until something modifies
it: a team namespace created while the operator starts would sit unreconciled, with nothing in the logs. Listing
again on each resync and adding what matches closes that gap. Namespaces are only added here: removing one is left
to kopf's watch, which sees every deletion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from kopf._cogs.structs.references import Insights  # not exported by kopf 1.45; its observer keeps this
from kopf._core.reactor.observation import revise_namespaces  # kopf's own matching: patterns, negations

from userservice_operator.kube import Kube

log = logging.getLogger(__name__)


async def add_missed(kube: Kube, insights: Insights, patterns: Collection[str]) -> set[str]:
    """List the namespaces once; serve those matching `patterns` that kopf does not. The names added."""
    listed = await kube.list("Namespace", None, cached=True)
    async with insights.revised:
        before = set(insights.namespaces)
        revise_namespaces(insights=insights, namespaces=patterns, raw_bodies=listed)  # type: ignore[arg-type]
        added = {str(name) for name in insights.namespaces - before}
        if added:
            insights.revised.notify_all()  # kopf's orchestrator starts their watchers
    for name in sorted(added):
        log.warning("namespace %s matches --namespace but kopf's watch missed it; serving it now", name)
    return added


async def keep_listing(kube: Kube, insights: Insights, patterns: Collection[str], interval: float) -> None:
    """`add_missed` every `interval` seconds, once kopf has its initial listing; failures wait for the next."""
    await insights.ready_namespaces.wait()
    while True:
        await asyncio.sleep(interval)
        try:
            await add_missed(kube, insights, patterns)
        except Exception:  # an API error: the next interval lists again
            log.exception("listing namespaces failed")
