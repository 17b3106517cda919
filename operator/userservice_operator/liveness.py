"""What `/healthz` answers: whether this replica is still doing its job, judged from inside the process only.

A standby is live while its lease loop runs. The leader is live while

- every core task of kopf runs: its resource and namespace observers, its orchestrator, and one watcher per
  watched kind and namespace (a watcher missing for longer than `grace` counts as ended: the orchestrator
  respawns a watcher at once, or not at all); and
- work does not wait for longer than `stall_seconds` without any reconcile pass completing (a failed pass
  counts as completed: an unreachable API server makes passes fail, it does not make the operator dead).

Nothing here asks the API server: a liveness probe that fails while the API server is down would restart
every operator replica for nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

# kopf 1.45's root tasks (kopf.spawn_tasks names them so) whose end stops all reconciling.
CORE_TASKS = ("resource observer", "namespace observer", "multidimensional multitasker")


def watcher_name(resource: Any, namespace: str | None) -> str:
    """The name kopf's orchestrator gives the watcher task of one kind in one namespace (None: cluster)."""
    return f"watcher for {resource}@{namespace}"


@dataclass
class Liveness:
    stall_seconds: float
    grace: float = 10.0
    clock: Callable[[], float] = time.monotonic
    lease_loop: asyncio.Task[Any] | None = None  # the standby's acquire loop, or the leader's renew loop
    kopf_tasks: Collection[asyncio.Task[Any]] = ()  # kopf's root tasks (the leader's)
    insights: Any = None  # kopf's Insights: the kinds and namespaces it watches (the leader's)
    stalled: Callable[[float], float] = lambda _: 0.0  # Controller.stalled
    _missing: dict[str, float] = field(default_factory=dict)  # watcher name -> first seen missing

    def lead(
        self, kopf_tasks: Collection[asyncio.Task[Any]], insights: Any, stalled: Callable[[float], float]
    ) -> None:
        self.kopf_tasks, self.insights, self.stalled = kopf_tasks, insights, stalled

    def problem(self) -> str | None:
        """Why this replica is not live; None when it is."""
        if self.lease_loop is not None and self.lease_loop.done():
            return "the lease loop ended"
        for task in self.kopf_tasks:
            if task.get_name() in CORE_TASKS and task.done():
                return f"kopf's {task.get_name()} ended"
        now = self.clock()
        if missing := self._missing_watchers(now):
            return f"kopf's {missing} ended"
        waited = self.stalled(now)
        if waited > self.stall_seconds:
            return f"work has waited {waited:.0f}s without a reconcile pass completing"
        return None

    async def failed(self, interval: float = 1.0) -> str:
        """Wait until this replica is not live; why."""
        while True:
            if why := self.problem():
                return why
            await asyncio.sleep(interval)

    def _missing_watchers(self, now: float) -> str | None:
        if self.insights is None:
            return None
        expected = {
            watcher_name(resource, namespace if resource.namespaced else None)
            for resource in self.insights.watched_resources
            for namespace in self.insights.namespaces
        }
        running = {task.get_name() for task in asyncio.all_tasks() if not task.done()}
        for name in set(self._missing) - (expected - running):
            del self._missing[name]
        for name in sorted(expected - running):
            if now - self._missing.setdefault(name, now) > self.grace:
                return name
        return None
