"""What /healthz answers, from real asyncio tasks named as kopf 1.45 names its own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client as k8s_client

from userservice_operator.kube import Kube
from userservice_operator.liveness import Liveness, watcher_name
from userservice_operator.metrics import OperatorMetrics
from userservice_operator.runtime import Controller, Worker

USERSERVICES = kopf.Resource("userservice.io", "v1alpha1", "userservices", namespaced=True)
BINDINGS = kopf.Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)


@dataclass
class Insights:
    """The two fields of kopf's Insights that liveness reads."""

    watched_resources: set[Any] = field(default_factory=set)
    namespaces: set[str | None] = field(default_factory=set)


async def forever() -> None:
    await asyncio.Event().wait()


async def ended(name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(asyncio.sleep(0), name=name)
    await task
    return task


def test_standby_is_live_while_its_lease_loop_runs() -> None:
    async def main() -> None:
        loop = asyncio.create_task(forever())
        live = Liveness(stall_seconds=60, lease_loop=loop)
        assert live.problem() is None
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        assert live.problem() == "the lease loop ended"

    asyncio.run(main())


def test_leader_is_not_live_once_a_core_task_of_kopf_ended() -> None:
    async def main() -> None:
        live = Liveness(stall_seconds=60, lease_loop=asyncio.create_task(forever()))
        running = [
            asyncio.create_task(forever(), name=n) for n in ("resource observer", "namespace observer")
        ]
        live.lead([*running, await ended("poster of events")], None, lambda _: 0.0)
        assert live.problem() is None, "a task that is not a core task may end"
        live.lead([*running, await ended("multidimensional multitasker")], None, lambda _: 0.0)
        assert live.problem() == "kopf's multidimensional multitasker ended"
        for task in running:
            task.cancel()

    asyncio.run(main())


def test_a_watcher_missing_longer_than_the_grace_has_ended() -> None:
    async def main() -> None:
        now = [100.0]
        insights = Insights({USERSERVICES, BINDINGS}, {"it-a", "it-b"})
        live = Liveness(stall_seconds=60, grace=10, clock=lambda: now[0])
        names = {
            watcher_name(USERSERVICES, "it-a"),
            watcher_name(USERSERVICES, "it-b"),
            watcher_name(BINDINGS, None),  # cluster-scoped: one watcher, whatever the namespaces
        }
        watchers = {name: asyncio.create_task(forever(), name=name) for name in names}
        live.lead([], insights, lambda _: 0.0)
        assert live.problem() is None
        gone = watcher_name(USERSERVICES, "it-b")
        watchers[gone].cancel()
        await asyncio.gather(watchers[gone], return_exceptions=True)
        assert live.problem() is None, "the orchestrator may be about to start it"
        now[0] += 11
        assert live.problem() == f"kopf's {gone} ended"
        insights.namespaces.discard("it-b")  # the namespace went away: its watcher is not wanted
        assert live.problem() is None
        for task in watchers.values():
            task.cancel()

    asyncio.run(main())


def test_waiting_work_without_a_completed_pass() -> None:
    async def main() -> None:
        live = Liveness(stall_seconds=60)
        live.lead([], None, lambda now: 59.0)
        assert live.problem() is None
        live.lead([], None, lambda now: 61.0)
        assert live.problem() == "work has waited 61s without a reconcile pass completing"

    asyncio.run(main())


def test_work_waits_from_the_oldest_wake_up_the_last_completed_pass_or_the_renewed_lease() -> None:
    ctl = Controller(Kube(k8s_client.ApiClient()), OperatorMetrics())
    body = {"metadata": {"namespace": "ns", "name": "a", "uid": "u"}}
    worker = Worker(ctl, body)  # not started: its due_since is what the test sets
    ctl.workers[("ns", "a")] = worker
    worker.due_since, ctl.last_pass, ctl.acting.since = 10.0, 5.0, 0.0
    assert ctl.stalled(100.0) == 90.0
    ctl.last_pass = 50.0  # another worker's pass completed since
    assert ctl.stalled(100.0) == 50.0
    ctl.acting.clear()  # the Lease could not be renewed: the work waits for the API server, not for us
    assert ctl.stalled(100.0) == 0.0
    ctl.acting.set()
    assert ctl.stalled(ctl.acting.since + 5) == 5.0
    worker.due_since = None
    assert ctl.stalled(100.0) == 0.0
