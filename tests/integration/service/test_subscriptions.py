"""Push delivery against a real kube-apiserver (the UserEventSubscription CRD, RBAC as the operator grants it),
real PostgreSQL and a real receiver over loopback that checks every signature with the `standardwebhooks`
package. The service runs in this process; tests/integration/service/test_subscription_failover.py kills real
`userservice serve` processes.

Each test makes its own subscription with its own receiver path and deletes it; the expiry test prunes the
database's events, so it runs last.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.support.kube import KubeCluster
from tests.support.receiver import Receiver
from tests.support.service import RunningService, ServiceProcess, in_process
from tests.support.users import new_user
from userservice.store import outbox
from userservice_operator.children.subscriptionaccess import rules
from userservice_operator.crd import SUBSCRIPTION_CRD_NAME, subscription_crd_text

pytestmark = pytest.mark.needs_kube

NAMESPACE = "usvc-push"
INSTANCE = "users"
SECRETS = ["hook-key", "rotating-key", "late-key"]
# Short rounds so each test's waits stay small; the defaults are minutes-safe, these are seconds.
FAST = {
    "SUBSCRIPTION_POLL_SECONDS": "0.3",
    "SUBSCRIPTION_LEASE_SECONDS": "2",
    "SUBSCRIPTION_STATUS_SECONDS": "0.3",
    "SUBSCRIPTION_SECRET_SECONDS": "0.5",
    "SUBSCRIPTION_CLUSTER_NETWORKS": "127.0.0.0/8",  # the receiver's loopback stands for the cluster here
}


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def secret(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "stringData": {"key": value},
    }


def service_account_kubeconfig(cluster: KubeCluster, directory: Path, account: str, namespace: str) -> Path:
    """A kubeconfig holding a token of the ServiceAccount (what the pod's mounted token would be)."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=3600s").stdout.strip()
    path = directory / f"{account}.kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": cluster.server, "certificate-authority": str(cluster.ca_file)},
                    }
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@dataclass
class Push:
    cluster: KubeCluster
    kubeconfig: Path
    keys: dict[str, str]  # Secret name -> whsec_ value

    def apply(self, *docs: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))

    def subscription(self, name: str, sink: dict[str, Any], **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "userservice.io/v1alpha1",
            "kind": "UserEventSubscription",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "userService": INSTANCE,
                "sink": sink,
                "signingSecretRef": {"name": "hook-key", "key": "key"},
                "delivery": {"minBackoffSeconds": 0.1, "maxBackoffSeconds": 1},
                **spec,
            },
        }

    def get(self, name: str) -> dict[str, Any]:
        out = self.cluster.kubectl("get", "usereventsubscription", name, "-n", NAMESPACE, "-o", "json")
        return dict(json.loads(out.stdout))

    def delete(self, name: str) -> None:
        self.cluster.kubectl("delete", "usereventsubscription", name, "-n", NAMESPACE, "--wait=false")

    async def status(
        self, name: str, check: Callable[[dict[str, Any]], bool], within: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            status = (await asyncio.to_thread(self.get, name)).get("status") or {}
            if check(status):
                return dict(status)
            if time.monotonic() > deadline:
                raise AssertionError(f"status of {name} never matched within {within}s: {status}")
            await asyncio.sleep(0.3)


def ready(status: dict[str, Any]) -> tuple[str, str]:
    for condition in status.get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"], condition["reason"]
    return "", ""


@pytest.fixture(scope="module")
def push(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Push:
    kube_cluster.kubectl("apply", "--server-side", "-f", "-", input=subscription_crd_text())
    kube_cluster.wait_established(SUBSCRIPTION_CRD_NAME)
    keys = {name: whsec() for name in SECRETS[:2]}  # late-key is made by its test
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "users-subscriptions", "namespace": NAMESPACE},
        "rules": rules(SECRETS),
    }
    setup = Push(kube_cluster, Path(), keys)
    setup.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": INSTANCE, "namespace": NAMESPACE},
        },
        role,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "users-subscriptions", "namespace": NAMESPACE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "users-subscriptions",
            },
            "subjects": [{"kind": "ServiceAccount", "name": INSTANCE, "namespace": NAMESPACE}],
        },
        *(secret(name, value) for name, value in keys.items()),
    )
    setup.kubeconfig = service_account_kubeconfig(
        kube_cluster, tmp_path_factory.mktemp("push"), INSTANCE, NAMESPACE
    )
    return setup


def delivery_env(push: Push) -> dict[str, str]:
    return {
        "SUBSCRIPTIONS_USERSERVICE": INSTANCE,
        "SUBSCRIPTIONS_NAMESPACE": NAMESPACE,
        "KUBECONFIG": str(push.kubeconfig),
        **FAST,
    }


@pytest.fixture(scope="module")
async def service(database: str, push: Push) -> AsyncIterator[RunningService]:
    async with in_process(database, env=delivery_env(push)) as running:
        yield running


@pytest.fixture(scope="module")
async def receiver(push: Push) -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    try:
        yield started
    finally:
        await started.stop()


async def create_users(service: RunningService, n: int) -> list[str]:
    ids = []
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            async with http.post(f"{service.http}/v1/users", json=new_user()) as resp:
                assert resp.status == 201, await resp.text()
                ids.append((await resp.json())["id"])
    return ids


async def subscribed(push: Push, receiver: Receiver, service: RunningService, name: str, **spec: Any) -> str:
    """Applies a subscription POSTing to /<name> on the receiver; returns once the service delivers it (its
    status is written)."""
    path = f"/{name}"
    receiver.keys[path] = [push.keys["hook-key"]]
    push.apply(push.subscription(name, {"uri": receiver.url + path}, **spec))
    await push.status(name, lambda s: "cursor" in s)
    return path


def created_subjects(receiver: Receiver, path: str) -> list[str]:
    return [e["subject"] for e in receiver.events(path) if e["type"] == "io.userservice.user.created.v1"]


async def test_events_arrive_signed_in_order_and_the_status_shows_progress(
    push: Push, receiver: Receiver, service: RunningService
) -> None:
    path = await subscribed(push, receiver, service, "in-order")
    ids = await create_users(service, 20)
    await receiver.wait(lambda: len(created_subjects(receiver, path)) >= 20)
    assert created_subjects(receiver, path) == ids
    arrivals = receiver.attempts(path)
    assert all(a.verified for a in arrivals)
    first = arrivals[0]
    assert first.headers["Content-Type"].startswith("application/cloudevents+json")
    assert first.event is not None and first.headers["webhook-id"] == first.event["id"]
    assert first.event["specversion"] == "1.0" and first.event["source"] == "/userservice"
    status = await push.status("in-order", lambda s: s.get("deliveries", 0) >= 20 and s["lag"]["events"] == 0)
    assert ready(status) == ("True", "Delivering")
    assert status["sink"] == f"{receiver.url}{path}" and status["lastDeliveredTime"]
    table = push.cluster.kubectl("get", "usereventsubscriptions", "in-order", "-n", NAMESPACE).stdout
    assert table.split()[:6] == ["NAME", "READY", "SINK", "LAG", "LAST", "DELIVERED"]
    assert table.splitlines()[1].split()[1:4] == ["True", f"{receiver.url}{path}", "0"]
    push.delete("in-order")


async def test_a_window_of_max_in_flight_events_is_sent_at_once(
    push: Push, receiver: Receiver, service: RunningService
) -> None:
    """maxInFlight 4: four POSTs are open at the receiver together; every event arrives, windows in order."""
    path = "/window"
    open_now = 0
    most = 0

    async def hold(arrival: Any) -> None:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        await asyncio.sleep(0.2)  # long enough for the rest of the window to arrive meanwhile
        open_now -= 1

    receiver.plans[path] = hold
    await subscribed(push, receiver, service, "window", delivery={"maxInFlight": 4})
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{service.http}/v1/users:batchCreate",
            json={"requests": [{"user": new_user()} for _ in range(8)]},
        ) as resp,
    ):  # one transaction: the eight events are there together, so the windows are 1-4 and 5-8
        assert resp.status == 200, await resp.text()
        ids = [u["id"] for u in (await resp.json())["users"]]
    await receiver.wait(lambda: len(created_subjects(receiver, path)) >= 8)
    got = created_subjects(receiver, path)
    assert most == 4
    assert [set(got[:4]), set(got[4:])] == [set(ids[:4]), set(ids[4:])]
    push.delete("window")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sink": {"ref": {"name": "a"}, "uri": "http://a.b/"}}, "exactly one of ref"),
        ({"sink": {"uri": "ftp://a.b/"}}, "absolute http:// or https:// URL"),
        ({"sink": {"ref": {"name": "a"}, "allowOutsideCluster": True}}, "applies to a uri only"),
        ({"delivery": {"minBackoffSeconds": 9, "maxBackoffSeconds": 2}}, "must not exceed maxBackoffSeconds"),
        ({"types": ["io.userservice.user.nope.v1"]}, "Unsupported value"),
        ({"startAt": "yesterday"}, "spec.startAt"),
    ],
)
def test_the_api_server_refuses_bad_specs_naming_the_field(
    push: Push, change: dict[str, Any], message: str
) -> None:
    bad = push.subscription("bad", {"uri": "http://sink.example/"})
    bad["spec"].update(change)
    out = push.cluster.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_fixed_fields_cannot_change(push: Push) -> None:
    push.apply(push.subscription("fixed", {"uri": "http://sink.example/"}, userService="nobody"))
    try:
        moved = push.subscription("fixed", {"uri": "http://sink.example/"}, userService="other")
        out = push.cluster.kubectl("apply", "-f", "-", input=json.dumps(moved), check=False)
        assert out.returncode != 0 and "spec.userService cannot change" in out.stderr, out.stderr
    finally:
        push.delete("fixed")


async def test_the_sink_guard_refuses_metadata_addresses_and_redirects_are_not_followed(
    push: Push, receiver: Receiver, service: RunningService
) -> None:
    push.apply(push.subscription("metadata", {"uri": "http://169.254.169.254/latest/meta-data/"}))
    redirect = "/redirecting"
    receiver.keys[redirect] = [push.keys["hook-key"]]
    receiver.plans[redirect] = lambda arrival: web.Response(status=307, headers={"Location": "/elsewhere"})
    push.apply(push.subscription("redirecting", {"uri": receiver.url + redirect}))
    try:
        await push.status("metadata", lambda s: "cursor" in s)
        await push.status("redirecting", lambda s: "cursor" in s)
        await create_users(service, 1)
        refused = await push.status("metadata", lambda s: ready(s) == ("False", "SinkRefused"))
        assert "169.254.169.254" in refused["conditions"][0]["message"]
        rejected = await push.status("redirecting", lambda s: ready(s) == ("False", "SinkRejecting"))
        assert "307 (redirects are not followed)" in rejected["conditions"][0]["message"]
        assert receiver.attempts("/elsewhere") == []
    finally:
        push.delete("metadata")
        push.delete("redirecting")


async def test_a_5xx_is_retried_with_the_same_id_until_it_succeeds(
    push: Push, receiver: Receiver, service: RunningService
) -> None:
    path = "/flaky"
    failures = 0

    def flaky(arrival: Any) -> web.Response | None:
        nonlocal failures
        if failures < 3:
            failures += 1
            return web.Response(status=500)
        return None

    receiver.plans[path] = flaky
    await subscribed(push, receiver, service, "flaky")
    (user,) = await create_users(service, 1)
    await receiver.wait(lambda: created_subjects(receiver, path) == [user])
    tries = [a for a in receiver.attempts(path) if a.verified]
    assert [a.status for a in tries] == [500, 500, 500, 204]
    assert len({a.headers["webhook-id"] for a in tries}) == 1  # stable across retries
    status = await push.status("flaky", lambda s: s.get("failures", 0) >= 3 and s.get("deliveries", 0) >= 1)
    assert ready(status)[0] == "True"
    push.delete("flaky")


async def test_retry_after_is_honoured(push: Push, receiver: Receiver, service: RunningService) -> None:
    path = "/throttled"
    answered: list[int] = []

    def throttle(arrival: Any) -> web.Response | None:
        if not answered:
            answered.append(429)
            return web.Response(status=429, headers={"Retry-After": "1"})
        return None

    receiver.plans[path] = throttle
    await subscribed(
        push, receiver, service, "throttled", delivery={"minBackoffSeconds": 0.1, "maxBackoffSeconds": 30}
    )
    (user,) = await create_users(service, 1)
    await receiver.wait(lambda: created_subjects(receiver, path) == [user])
    first, second = receiver.attempts(path)[:2]
    assert (first.status, second.status) == (429, 204)
    # The backoff alone would retry after 0.05-0.1 s; Retry-After asked for 1 s.
    assert second.at - first.at >= 0.95
    push.delete("throttled")


async def test_a_receiver_down_then_back_gets_everything_in_order(
    push: Push, receiver: Receiver, service: RunningService
) -> None:
    down = await Receiver().start()
    path = "/outage"
    down.keys[path] = [push.keys["hook-key"]]
    push.apply(push.subscription("outage", {"uri": down.url + path}))
    await push.status("outage", lambda s: "cursor" in s)
    await down.stop()
    try:
        ids = await create_users(service, 10)
        status = await push.status(
            "outage", lambda s: ready(s) == ("False", "SinkUnreachable") and s["lag"]["events"] >= 10
        )
        assert "cannot connect" in status["conditions"][0]["message"]
    finally:
        await down.start(down.port)
    try:
        await down.wait(lambda: len(created_subjects(down, path)) >= 10)
        assert created_subjects(down, path) == ids
        status = await push.status("outage", lambda s: ready(s)[0] == "True" and s["lag"]["events"] == 0)
    finally:
        push.delete("outage")
        await down.stop()


async def test_a_rotated_key_signs_once_the_secret_changes(
    push: Push, receiver: Receiver, service: RunningService
) -> None:
    path = "/rotating"
    receiver.keys[path] = [push.keys["rotating-key"]]
    push.apply(
        push.subscription(
            "rotating", {"uri": receiver.url + path}, signingSecretRef={"name": "rotating-key", "key": "key"}
        )
    )
    await push.status("rotating", lambda s: "cursor" in s)
    (before,) = await create_users(service, 1)
    await receiver.wait(lambda: created_subjects(receiver, path) == [before])
    new = whsec()
    receiver.keys[path] = [
        new
    ]  # the receiver now takes only the new key: old signatures get 401 and are retried
    push.apply(secret("rotating-key", f"{new} {push.keys['rotating-key']}"))
    (after,) = await create_users(service, 1)
    await receiver.wait(lambda: created_subjects(receiver, path) == [before, after])
    last = receiver.attempts(path)[-1]
    assert len(last.headers["webhook-signature"].split()) == 2  # both keys sign during the rotation
    push.delete("rotating")


async def test_a_missing_signing_secret_is_reported_then_delivery_starts(
    push: Push, receiver: Receiver, service: RunningService
) -> None:
    path = "/late"
    key = whsec()
    receiver.keys[path] = [key]
    push.apply(
        push.subscription(
            "late", {"uri": receiver.url + path}, signingSecretRef={"name": "late-key", "key": "key"}
        )
    )
    await push.status("late", lambda s: "cursor" in s)
    (user,) = await create_users(service, 1)
    status = await push.status("late", lambda s: ready(s) == ("False", "SigningSecretMissing"))
    assert "late-key" in status["conditions"][0]["message"]
    assert receiver.attempts(path) == []  # nothing unsigned is ever sent
    push.apply(secret("late-key", key))
    await receiver.wait(lambda: created_subjects(receiver, path) == [user])
    await push.status("late", lambda s: ready(s)[0] == "True")
    push.delete("late")


async def test_a_deleted_subscription_stops_and_leaves_nothing(
    push: Push, receiver: Receiver, service: RunningService, database: str
) -> None:
    path = "/deleted"
    receiver.plans[path] = lambda arrival: web.Response(status=500)  # never delivered: retried until deleted
    await subscribed(push, receiver, service, "deleted")
    await create_users(service, 3)
    await receiver.wait(lambda: len(receiver.attempts(path)) >= 3)
    push.delete("deleted")
    conn = await asyncpg.connect(database)
    try:  # the round stops a deleted subscription's worker, then deletes its row
        deadline = time.monotonic() + 30
        while await conn.fetchval("SELECT count(*) FROM subscription_deliveries WHERE name = 'deleted'"):
            assert time.monotonic() < deadline, "the deleted subscription's row is still there"
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    settled = len(receiver.attempts(path))
    control = await subscribed(push, receiver, service, "control")
    (user,) = await create_users(service, 1)
    await receiver.wait(lambda: created_subjects(receiver, control) == [user])
    assert len(receiver.attempts(path)) == settled
    push.delete("control")


def delivered_by(process: ServiceProcess, subscription: str) -> float:
    """The process's count of events its sink acknowledged, from its /metrics."""
    with urllib.request.urlopen(f"{process.management}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = f'userservice_subscription_deliveries_total{{outcome="delivered",subscription="{subscription}"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted))


async def test_one_replica_delivers_and_another_takes_over_when_it_is_killed(
    push: Push, receiver: Receiver, database: str
) -> None:
    """Two `userservice serve` processes: one holds the lease and delivers; SIGKILL it mid-batch, the other
    takes over from the cursor in PostgreSQL. Everything arrives in order; at most the event in flight (maxInFlight
    1) arrives twice."""
    env = {**delivery_env(push), "SUBSCRIPTIONS_USERSERVICE": "replicated"}
    processes = [ServiceProcess(database, env).start(), ServiceProcess(database, env).start()]
    try:
        path = "/failover"
        receiver.keys[path] = [push.keys["hook-key"]]

        async def slow(arrival: Any) -> None:
            await asyncio.sleep(0.05)  # a batch stays in flight long enough to be cut

        receiver.plans[path] = slow
        push.apply(push.subscription("failover", {"uri": receiver.url + path}, userService="replicated"))
        await push.status("failover", lambda s: "cursor" in s)
        ids = await create_users(RunningService(processes[0].http, "", asyncio.Event()), 40)
        await receiver.wait(lambda: len(created_subjects(receiver, path)) >= 10)
        counts = [delivered_by(p, "failover") for p in processes]
        assert sorted(c > 0 for c in counts) == [False, True], counts  # exactly one replica delivers
        holder, other = (processes[0], processes[1]) if counts[0] else (processes[1], processes[0])
        holder.kill()
        await receiver.wait(lambda: set(ids) <= set(created_subjects(receiver, path)))
        got = created_subjects(receiver, path)
        assert list(dict.fromkeys(got)) == ids  # in order, nothing skipped
        assert len(got) - len(set(got)) <= 1  # only the event in flight at the kill repeats
        assert delivered_by(other, "failover") > 0
        await push.status("failover", lambda s: ready(s)[0] == "True" and s["lag"]["events"] == 0)
    finally:
        push.delete("failover")
        for process in processes:
            process.kill()


async def test_events_pruned_before_delivery_are_counted_and_reported(
    push: Push, receiver: Receiver, service: RunningService, database: str
) -> None:
    path = "/expiring"
    failing = True
    receiver.plans[path] = lambda arrival: web.Response(status=503) if failing else None
    await subscribed(push, receiver, service, "expiring")
    ids = await create_users(service, 4)
    await receiver.wait(lambda: len(receiver.attempts(path)) >= 1)
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            assert await outbox.prune(conn, 0) >= 4  # retention 0: every event below the horizon goes
    finally:
        await conn.close()
    failing = False
    status = await push.status("expiring", lambda s: ready(s)[1] == "EventsExpired")
    assert status["expiredEvents"] == 4
    assert "4 events" in status["conditions"][0]["message"]
    assert not set(ids) <= set(created_subjects(receiver, path))  # what was pruned is not invented
    (later,) = await create_users(service, 1)
    await receiver.wait(lambda: later in created_subjects(receiver, path))
    push.delete("expiring")
