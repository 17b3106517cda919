"""End to end on the local one-node cluster (hack/cluster.sh): seven steps, in order.

The operator comes from the Helm chart, the UserService's pods run the image under test (IMAGE) in containerd,
PostgreSQL runs on the host (tests/e2e/conftest.py), metrics-server feeds the HPA and prometheus-operator runs
the Prometheus that honours the operator's ServiceMonitor. All traffic goes to ClusterIPs (kube-proxy's
iptables rules on the host) or pod IPs on the cluster bridge. The tests share one UserService and run in file
order; each later step needs the earlier ones.
"""

from __future__ import annotations

import abc
import base64
import collections
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import grpc
import pytest
import yaml
from google.protobuf import field_mask_pb2

from tests.e2e.conftest import IMAGE, OPERATOR_NAMESPACE, HostPostgres, kubectl, run
from tests.support.users import new_user
from userservice.v1 import user_service_pb2, user_service_pb2_grpc

pytestmark = [pytest.mark.needs_docker, pytest.mark.timeout(3600)]

NAME = "users"
NEW_TAG = "e2e-rollout"


NAMESPACE: list[str] = []  # the test namespace, for diagnostics


def diagnostics() -> str:
    """The state worth seeing when a wait times out: the namespace's objects, events, the operator's log."""
    if not NAMESPACE:
        return ""
    ns = NAMESPACE[0]
    parts = [
        kubectl("-n", ns, "get", "userservice,deploy,rs,pods,jobs,hpa,svc", "-o", "wide", check=False),
        kubectl("-n", ns, "get", "userservice", NAME, "-o", "jsonpath={.status}", check=False),
        kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp", check=False)[-4000:],
        kubectl("-n", "userservice-system", "logs", "deploy/userservice-operator", "--tail=30", check=False),
    ]
    return "\n".join(parts)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 180, every: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except (AssertionError, urllib.error.URLError, OSError, grpc.RpcError, json.JSONDecodeError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})\n{diagnostics()}")
        time.sleep(every)


# The test process calls as the ServiceAccount `e2e-admin` of the test namespace, bound to userservice-admin: its
# token (audience of the UserService) is minted in step 1.
TOKEN: list[str] = []


def call_as_admin(namespace: str, name: str) -> None:
    """From now on the test process calls as a ServiceAccount of `namespace` granted userservice-admin (the way
    docs/operator.md says), with a token for the UserService `name`."""
    kubectl("-n", namespace, "create", "serviceaccount", "e2e-admin")
    kubectl("-n", namespace, "create", "rolebinding", "e2e-admin", "--clusterrole=userservice-admin",
            f"--serviceaccount={namespace}:e2e-admin")  # fmt: skip
    audience = f"userservice.io/{namespace}/{name}"
    token = kubectl(
        "-n", namespace, "create", "token", "e2e-admin", f"--audience={audience}", "--duration=3h"
    )
    TOKEN[:] = [token.strip()]


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN[0]}"} if TOKEN else {}


def http(
    method: str, url: str, body: Any = None, timeout: float = 10, *, token: bool = True
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    headers = {"Content-Type": ctype, **(auth_headers() if token else {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class _Details(
    collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    pass


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds the caller's token to every gRPC call (`authorization` metadata)."""

    def _with_token(self, d: Any) -> _Details:
        metadata = [*(d.metadata or []), *((k.lower(), v) for k, v in auth_headers().items())]
        return _Details(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)


def grpc_channel(target: str) -> grpc.Channel:
    """An insecure channel whose calls carry the caller's token."""
    return grpc.intercept_channel(grpc.insecure_channel(target), _Bearer())


def get_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


@dataclass
class Deployed:
    namespace: str
    http: str  # http://<ClusterIP>:<port>
    grpc: str  # <ClusterIP>:<port>
    management: str  # http://<ClusterIP>:<port>: /healthz, /readyz, /metrics
    postgres: HostPostgres
    database: str

    def pods(self) -> list[dict[str, Any]]:
        items = get_json(
            "-n", self.namespace, "get", "pods", "-l",
            f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=server",
        )["items"]  # fmt: skip
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods()
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]

    def deployment(self) -> Any:
        return get_json("-n", self.namespace, "get", "deployment", NAME)

    def count_users(self, ids: list[str]) -> int:
        if not ids:
            return 0
        quoted = ",".join(f"'{i}'" for i in ids)
        return int(self.postgres.psql(f"SELECT count(*) FROM users WHERE id IN ({quoted})", self.database))


def usvc_manifest(namespace: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "userservice.io/v1alpha1",
        "kind": "UserService",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "image": image,
            "imagePullPolicy": "Never",
            "database": {"secretRef": {"name": "users-db", "key": "url"}},
            "autoscaling": {
                "minReplicas": 2,
                "maxReplicas": 4,
                "targetCPUUtilizationPercentage": 50,
                # Short windows so the test sees the scale-up and the scale-down within minutes.
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 10}],
                    },
                    "scaleDown": {
                        "stabilizationWindowSeconds": 20,
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 10}],
                    },
                },
            },
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "monitoring": {"serviceMonitor": {"interval": "5s"}},
            "preStopSleepSeconds": 5,
            "shutdownGracePeriodSeconds": 20,
        },
    }


@pytest.fixture(scope="module")
def deployed(cluster: Path, operator_release: str, host_postgres: HostPostgres) -> Iterator[Deployed]:
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    url = host_postgres.database_url(database)
    kubectl("create", "namespace", namespace)
    NAMESPACE[:] = [namespace]
    kubectl("-n", namespace, "create", "secret", "generic", "users-db", f"--from-literal=url={url}")
    try:
        yield Deployed(namespace, "", "", "", host_postgres, database)
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# 1 ------------------------------------------------------------------------------------------------------------
def test_1_operator_from_helm_and_usvc_ready(deployed: Deployed) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(usvc_manifest(deployed.namespace, IMAGE)))
    # What a user runs: Ready waits for autoscaling.minReplicas (2) pods, not for the first one.
    kubectl(
        "-n",
        deployed.namespace,
        "wait",
        "--for=condition=Ready",
        f"usvc/{NAME}",
        "--timeout=300s",
        timeout=330,
    )
    out = kubectl("-n", deployed.namespace, "get", "usvc", NAME)
    header, row = out.splitlines()[:2]
    cols = dict(zip(header.split(), row.split(), strict=False))
    assert cols["READY"] == "True" and int(cols["REPLICAS"]) >= 2, out
    svc = get_json("-n", deployed.namespace, "get", "service", NAME)
    ip = svc["spec"]["clusterIP"]
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    deployed.http = f"http://{ip}:{ports['http']}"
    deployed.grpc = f"{ip}:{ports['grpc']}"
    deployed.management = f"http://{ip}:{ports['management']}"
    call_as_admin(deployed.namespace, NAME)


# 2 ------------------------------------------------------------------------------------------------------------
def test_2_rest_and_grpc_through_the_service(deployed: Deployed) -> None:
    assert deployed.http, "step 1 did not pass"
    wait_until(
        "readiness through the ClusterIP",
        lambda: http("GET", deployed.management + "/readyz")[0] == 200,
        60,
        1,
    )
    status, body = http("GET", deployed.http + "/v1/users", token=False)
    assert status == 401, body
    user = new_user()
    status, body = http("POST", deployed.http + "/v1/users", user)
    assert status == 201, body
    created = json.loads(body)
    status, body = http("GET", deployed.http + "/v1/users?" + urllib.parse.urlencode({"page_size": 1000}))
    assert status == 200 and created["id"] in {u["id"] for u in json.loads(body)["users"]}, body
    status, body = http("PATCH", deployed.http + f"/v1/users/{created['id']}", {"first_name": "Grace"})
    assert status == 200 and json.loads(body)["first_name"] == "Grace", body
    status, body = http("DELETE", deployed.http + f"/v1/users/{created['id']}")
    assert status in (200, 204), body
    assert http("GET", deployed.http + f"/v1/users/{created['id']}")[0] == 404

    with grpc_channel(deployed.grpc) as channel:
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        u = new_user()
        made = stub.CreateUser(
            user_service_pb2.CreateUserRequest(user=user_service_pb2.User(**u)), timeout=20
        )
        listed = stub.ListUsers(user_service_pb2.ListUsersRequest(page_size=1000), timeout=20)
        assert made.id in {x.id for x in listed.users}
        updated = stub.UpdateUser(
            user_service_pb2.UpdateUserRequest(
                user=user_service_pb2.User(id=made.id, last_name="Hopper"),
                update_mask=field_mask_pb2.FieldMask(paths=["last_name"]),
            ),
            timeout=20,
        )
        assert updated.last_name == "Hopper" and updated.version == made.version + 1
        stub.DeleteUser(user_service_pb2.DeleteUserRequest(id=made.id), timeout=20)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetUser(user_service_pb2.GetUserRequest(id=made.id), timeout=20)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


# A pod that opens a TCP connection: "open" as soon as one attempt succeeds within `seconds` (kube-router adds a
# new pod to the policies' ipsets a moment after it starts), else "closed".
CONNECT = """
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + seconds
while True:
    try:
        socket.create_connection((host, port), timeout=2).close()
        print("open")
        break
    except OSError:
        if time.monotonic() > deadline:
            print("closed")
            break
        time.sleep(1)
"""


def run_python(
    namespace: str,
    script: str,
    *args: str,
    labels: dict[str, str] | None = None,
    service_account: str | None = None,
    audience: str | None = None,
    timeout: float = 90,
) -> str:
    """What `python -c script args` prints in a pod of `namespace` (the image under test). With `audience`, the
    pod mounts a projected token of its ServiceAccount for that audience at /var/run/secrets/userservice/token."""
    name = f"probe-{uuid.uuid4().hex[:6]}"
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"e2e": "probe", **(labels or {})}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "fsGroup": 10001,  # the projected token readable by the container's user
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", script, *args],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }
    if service_account:
        pod["spec"]["serviceAccountName"] = service_account
    if audience:
        token = {"serviceAccountToken": {"audience": audience, "expirationSeconds": 3600, "path": "token"}}
        pod["spec"]["volumes"] = [{"name": "userservice-token", "projected": {"sources": [token]}}]
        pod["spec"]["containers"][0]["volumeMounts"] = [
            {"name": "userservice-token", "mountPath": "/var/run/secrets/userservice", "readOnly": True}
        ]
    kubectl("apply", "-f", "-", input=json.dumps(pod))
    try:
        wait_until(
            f"probe pod {name} finished",
            lambda: (
                get_json("-n", namespace, "get", "pod", name)["status"].get("phase")
                in ("Succeeded", "Failed")
            ),
            timeout=timeout,
        )
        return kubectl("-n", namespace, "logs", name).strip()
    finally:
        kubectl("-n", namespace, "delete", "pod", name, "--wait=false", check=False)


def connects(
    namespace: str, host: str, port: int, labels: dict[str, str] | None = None, seconds: int = 20
) -> bool:
    """Whether a pod in `namespace` with `labels` reaches host:port."""
    out = run_python(namespace, CONNECT, host, str(port), str(seconds), labels=labels, timeout=seconds + 90)
    assert out in ("open", "closed"), out
    return out == "open"


# Calls the REST API with the pod's projected token: prints the HTTP status of each "METHOD PATH" argument. A new
# pod is admitted by the NetworkPolicy a moment after it starts (kube-router adds it to the policy's ipset):
# connection errors are retried for a while.
CALL = """
import sys, time, urllib.error, urllib.request
base = sys.argv[1]
try:
    token = open("/var/run/secrets/userservice/token").read().strip()
except OSError as exc:
    sys.exit("token:" + type(exc).__name__)
body = b'{"email": "probe@example.com", "first_name": "P", "last_name": "Q", "password": "pw-Probe-123456"}'
deadline = time.monotonic() + 30
for call in sys.argv[2:]:
    method, path = call.split(" ", 1)
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    while True:
        req = urllib.request.Request(base + path, method=method, data=body if method == "POST" else None,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                print(r.status)
        except urllib.error.HTTPError as exc:
            print(exc.code)
        except OSError as exc:
            if time.monotonic() < deadline:
                time.sleep(1)
                continue
            print(type(exc).__name__ + ":" + str(exc).replace(" ", "_"))  # one word for the assertion message
        break
"""


def test_2_client_pods_with_projected_tokens_get_what_their_role_binding_grants(deployed: Deployed) -> None:
    """A pod whose ServiceAccount is bound to userservice-viewer reads users and is refused a write; a pod whose
    ServiceAccount has no binding is refused a read; a token for another audience is not accepted. The pods
    present a projected token as docs/operator.md shows."""
    assert deployed.http, "step 1 did not pass"
    ns = deployed.namespace
    audience = f"userservice.io/{ns}/{NAME}"
    base = deployed.http  # the ClusterIP: what is under test is the token, not cluster DNS
    for sa in ("reader", "stranger"):
        kubectl("-n", ns, "create", "serviceaccount", sa)
    kubectl("-n", ns, "create", "rolebinding", "reader-users", "--clusterrole=userservice-viewer",
            f"--serviceaccount={ns}:reader")  # fmt: skip

    def listed() -> set[str]:  # the rules on users.userservice.io, as `kubectl auth can-i --list` shows them
        out = kubectl("auth", "can-i", "--list", f"--as=system:serviceaccount:{ns}:reader", "-n", ns)
        rows = [line.split() for line in out.splitlines() if line.startswith("users.userservice.io ")]
        return {verb.strip("[]") for row in rows for verb in row[3:]}

    # what the service's SubjectAccessReview will be told, once the binding reached the authorizer
    assert wait_until("the reader's rules listed", lambda: listed() == {"get", "list", "watch"}, 30, 1)
    calls = ("GET /v1/users?page_size=1", "POST /v1/users")
    out = run_python(ns, CALL, base, *calls, service_account="reader", audience=audience).split()
    assert out == ["200", "403"], out
    out = run_python(ns, CALL, base, *calls, service_account="stranger", audience=audience).split()
    assert out == ["403", "403"], out
    out = run_python(ns, CALL, base, calls[0], service_account="reader", audience="someone-else").split()
    assert out == ["401"], out


def test_2_network_policy_admits_only_access_from_to_the_api_ports(deployed: Deployed) -> None:
    """kube-router enforces the operator's NetworkPolicy: by default only pods of the UserService's namespace
    reach the API ports; spec.access.from changes who may; the management port admits only the monitoring
    namespace. (The test process itself calls from the node, which NetworkPolicy implementations admit, like
    kubelet's probes.)"""
    assert deployed.http, "step 1 did not pass"
    ns = deployed.namespace
    svc = get_json("-n", ns, "get", "service", NAME)
    ip, ports = svc["spec"]["clusterIP"], {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    outside = f"{ns}-outside"
    kubectl("create", "namespace", outside)
    try:
        assert connects(ns, ip, ports["http"]), "a pod of the UserService's namespace is refused"
        assert connects(ns, ip, ports["grpc"])
        assert not connects(outside, ip, ports["http"], seconds=8), "a pod of another namespace got in"
        assert not connects(outside, ip, ports["grpc"], seconds=8)
        assert not connects(outside, ip, ports["management"], seconds=8)

        callers = [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": outside}},
                "podSelector": {"matchLabels": {"role": "caller"}},
            }
        ]
        kubectl(
            "-n",
            ns,
            "patch",
            "userservice",
            NAME,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"access": {"from": callers}}}),
        )
        wait_until(
            "NetworkPolicy follows spec.access.from",
            lambda: get_json("-n", ns, "get", "networkpolicy", NAME)["spec"]["ingress"][0]["from"] == callers,
            timeout=60,
        )
        assert connects(outside, ip, ports["http"], {"role": "caller"}), (
            "a peer of spec.access.from is refused"
        )
        assert not connects(outside, ip, ports["http"], {"role": "other"}, seconds=8)
        assert not connects(ns, ip, ports["http"], seconds=8), "the old peers still get in"
    finally:
        kubectl("-n", ns, "patch", "userservice", NAME, "--type=json", "-p",
                '[{"op": "remove", "path": "/spec/access/from"}]', check=False)  # fmt: skip
        kubectl("delete", "namespace", outside, "--wait=false", check=False)


def test_2_watch_events_on_one_pod_while_writing_through_another(deployed: Deployed) -> None:
    pods = wait_until("two ready pods", lambda: (p := deployed.ready_pods()) and len(p) >= 2 and p, 120)
    watch_ip, write_ip = pods[0]["status"]["podIP"], pods[1]["status"]["podIP"]
    events: list[user_service_pb2.UserEvent] = []
    channel = grpc_channel(f"{watch_ip}:50051")
    stream = user_service_pb2_grpc.UserServiceStub(channel).WatchUserEvents(
        user_service_pb2.WatchUserEventsRequest(), timeout=120
    )

    def follow() -> None:
        try:
            for event in stream:
                events.append(event)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    base = f"http://{write_ip}:8080"
    # The stream starts at the current end once the server has the call: write markers until one shows up.
    markers: set[str] = set()

    def subscribed() -> bool:
        status, body = http("POST", base + "/v1/users", new_user())
        assert status == 201, body
        markers.add(json.loads(body)["id"])
        return any(e.subject in markers for e in events)

    wait_until("the watch stream delivers", subscribed, timeout=30, every=1)
    status, body = http("POST", base + "/v1/users", new_user())
    assert status == 201, body
    uid = json.loads(body)["id"]
    assert http("PATCH", base + f"/v1/users/{uid}", {"country": "FR"})[0] == 200
    assert http("DELETE", base + f"/v1/users/{uid}")[0] in (200, 204)
    try:
        wait_until(
            "created/updated/deleted events on the other pod",
            lambda: (
                [e.type.split(".")[-2] for e in events if e.subject == uid]
                == ["created", "updated", "deleted"]
            ),
            timeout=30,
            every=0.5,
        )
    finally:
        stream.cancel()
        channel.close()


# A webhook receiver for the sample UserEventSubscription (deploy/samples/subscription.yaml: Service `user-events`,
# port 8080, path /events), run by the image under test with the standard library only: it checks each POST's
# Standard Webhooks signature against the key mounted from the Secret (401 otherwise), keeps the verified events
# and lists them, in arrival order, at GET /received.
RECEIVER = """
import base64, hashlib, hmac, json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
keys = [base64.b64decode(k[6:]) for k in open("/etc/hooks/key").read().split()]
got, lock = [], threading.Lock()
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        signed = f"{self.headers['webhook-id']}.{self.headers['webhook-timestamp']}.".encode() + body
        mine = {"v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode() for k in keys}
        if not mine & set(self.headers["webhook-signature"].split()):
            self.send_response(401); self.end_headers(); return
        event = json.loads(body)
        with lock:
            got.append({"id": event["id"], "type": event["type"], "subject": event["subject"]})
        self.send_response(204); self.end_headers()
    def do_GET(self):
        with lock:
            body = json.dumps(got).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""


def receiver_manifests(namespace: str) -> list[dict[str, Any]]:
    labels = {"app": "user-events"}
    container = {
        "name": "receiver",
        "image": IMAGE,
        "imagePullPolicy": "Never",
        "command": ["python", "-c", RECEIVER],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        "volumeMounts": [{"name": "key", "mountPath": "/etc/hooks", "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    pod_spec = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": "key", "secret": {"secretName": "users-hooks"}}],
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "user-events", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "user-events", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]},
        },
    ]


def received(deployed: Deployed) -> list[str]:
    """Subjects of the created events the receiver verified, in arrival order (through its ClusterIP)."""
    ip = get_json("-n", deployed.namespace, "get", "service", "user-events")["spec"]["clusterIP"]
    status, body = http("GET", f"http://{ip}:8080/received", token=False)
    assert status == 200, body
    return [e["subject"] for e in json.loads(body) if e["type"] == "io.userservice.user.created.v1"]


def subscription_columns(deployed: Deployed) -> dict[str, str]:
    out = kubectl("-n", deployed.namespace, "get", "usereventsubscriptions", "user-events")
    header, row = out.splitlines()[:2]
    # "LAST DELIVERED" is one column of two words: split on runs of two or more spaces.
    split = lambda line: [c for c in line.split("  ") if c.strip()]  # noqa: E731
    return dict(zip((c.strip() for c in split(header)), (c.strip() for c in split(row)), strict=False))


def test_2_a_subscription_delivers_signed_events_to_a_receiver_deployment(deployed: Deployed) -> None:
    """The sample subscription, applied with kubectl, to a receiver Deployment that checks signatures: users
    created through the API arrive in order, and `kubectl get usereventsubscriptions` shows Ready and no lag."""
    assert deployed.http, "step 1 did not pass"
    ns = deployed.namespace
    key = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    kubectl("-n", ns, "create", "secret", "generic", "users-hooks", f"--from-literal=key={key}")
    kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in receiver_manifests(ns)))
    kubectl("-n", ns, "rollout", "status", "deployment/user-events", "--timeout=120s", timeout=150)
    samples = yaml.safe_load_all(
        (Path(__file__).resolve().parents[2] / "deploy/samples/subscription.yaml").read_text()
    )
    (subscription,) = [d for d in samples if d and d["kind"] == "UserEventSubscription"]
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(subscription))
    wait_until(
        "the subscription is Ready", lambda: subscription_columns(deployed).get("READY") == "True", 120
    )
    ids = []
    for _ in range(5):
        status, body = http("POST", deployed.http + "/v1/users", new_user())
        assert status == 201, body
        ids.append(json.loads(body)["id"])
    wait_until("the users arrive at the receiver, in order", lambda: received(deployed) == ids, 60, every=1)
    columns = wait_until(
        "the status shows no lag", lambda: (c := subscription_columns(deployed)).get("LAG") == "0" and c, 60
    )
    assert columns["READY"] == "True" and columns["SINK"] == f"http://user-events.{ns}.svc:8080/events", (
        columns
    )
    assert columns["LAST DELIVERED"] != "<none>", columns


# load ---------------------------------------------------------------------------------------------------------
class Threaded(abc.ABC):
    """Runs `_run` on `threads` daemon threads from `with` until its end, which sets `_stop` (the subclasses are
    dataclasses with those fields)."""

    threads: int
    _stop: threading.Event
    _workers: list[threading.Thread]

    @abc.abstractmethod
    def _run(self) -> None:
        """One thread's work, until `_stop` is set."""

    def __enter__(self) -> Self:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)


@dataclass
class Writer(Threaded):
    """Creates users through the Service from `threads` threads until stopped (or `limit` seconds)."""

    base: str
    threads: int = 1
    limit: float = 300
    acked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = http("POST", self.base + "/v1/users", new_user(), timeout=15)
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append(repr(exc))
                continue
            if status == 201:
                self.acked.append(json.loads(body)["id"])
            else:
                self.failures.append(f"{status} {body[:200]!r}")


def hpa_status(deployed: Deployed) -> dict[str, Any]:
    return dict(get_json("-n", deployed.namespace, "get", "hpa", NAME).get("status", {}))


# 3 ------------------------------------------------------------------------------------------------------------
def test_3_hpa_scales_up_under_load_and_back_down(deployed: Deployed) -> None:
    wait_until(
        "HPA sees CPU metrics (metrics-server)",
        lambda: any(
            m.get("resource", {}).get("current") for m in hpa_status(deployed).get("currentMetrics") or []
        ),
        timeout=180,
        every=5,
    )
    minimum = 2
    with Writer(deployed.http, threads=6, limit=300) as load:
        wait_until(
            "HPA above the minimum", lambda: hpa_status(deployed).get("desiredReplicas", 0) > minimum, 300, 3
        )
    assert load.acked, load.failures[:5]
    wait_until(
        "more ready pods than the minimum",
        lambda: (
            len(deployed.ready_pods()) > minimum or hpa_status(deployed).get("desiredReplicas", 0) <= minimum
        ),
        120,
        3,
    )
    wait_until(
        "HPA back at the minimum after the load stopped",
        lambda: hpa_status(deployed).get("desiredReplicas") == minimum and len(deployed.pods()) == minimum,
        timeout=300,
        every=5,
    )


# 4 ------------------------------------------------------------------------------------------------------------
def prometheus(path: str, **params: str) -> Any:
    svc = get_json("-n", "monitoring", "get", "service", "prometheus")
    url = f"http://{svc['spec']['clusterIP']}:9090{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_4_prometheus_scrapes_every_pod_through_the_servicemonitor(deployed: Deployed) -> None:
    get_json("-n", deployed.namespace, "get", "servicemonitor", NAME)

    def all_up() -> bool:
        pod_ips = {p["status"]["podIP"] for p in deployed.ready_pods()}
        targets = prometheus("/api/v1/targets", state="active")["data"]["activeTargets"]
        up = {
            t["labels"].get("pod") and t["discoveredLabels"].get("__meta_kubernetes_pod_ip")
            for t in targets
            if t["labels"].get("namespace") == deployed.namespace and t["health"] == "up"
        }
        return bool(pod_ips) and pod_ips <= up

    with Writer(deployed.http, threads=1, limit=60):
        wait_until("every pod an up target", all_up, timeout=240, every=5)
        query = f'sum(rate(userservice_http_requests_total{{namespace="{deployed.namespace}"}}[30s]))'
        result = wait_until(
            "a request rate from PromQL",
            lambda: prometheus("/api/v1/query", query=query)["data"]["result"],
            timeout=120,
            every=5,
        )
    assert float(result[0]["value"][1]) > 0, result


# 5 ------------------------------------------------------------------------------------------------------------
def test_5_image_change_migrates_first_then_rolls_without_a_failed_request(deployed: Deployed) -> None:
    source = "docker.io/library/" + IMAGE if "/" not in IMAGE else IMAGE
    target = source.rsplit(":", 1)[0] + ":" + NEW_TAG
    new_image = IMAGE.rsplit(":", 1)[0] + ":" + NEW_TAG
    run("bash", "hack/cluster.sh", "tag", source, target)
    before = {j["metadata"]["name"] for j in get_json("-n", deployed.namespace, "get", "jobs")["items"]}
    with Writer(deployed.http, threads=2, limit=600) as writer:
        time.sleep(3)
        kubectl(
            "-n", deployed.namespace, "patch", "userservice", NAME, "--type", "merge",
            "-p", json.dumps({"spec": {"image": new_image}}),
        )  # fmt: skip
        seen_job_done_before_roll = []

        def rolled() -> bool:
            # The Deployment first, then the Jobs: a Job that succeeded before the Deployment was read is still
            # succeeded when the Jobs are read, while the other order sees a roll that followed the Job in the
            # gap between the two reads as one that preceded it.
            dep = deployed.deployment()
            jobs = get_json("-n", deployed.namespace, "get", "jobs")["items"]
            new_jobs = [j for j in jobs if j["metadata"]["name"] not in before]
            done = any(j.get("status", {}).get("succeeded") for j in new_jobs)
            image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
            if image == new_image:
                seen_job_done_before_roll.append(done)
            st = dep.get("status", {})
            return (
                image == new_image
                and st.get("updatedReplicas") == st.get("replicas") == st.get("readyReplicas")
                and st.get("observedGeneration") == dep["metadata"]["generation"]
            )

        wait_until("rollout to the new image", rolled, timeout=400, every=1)
        time.sleep(3)
    assert seen_job_done_before_roll and seen_job_done_before_roll[0], (
        "Deployment rolled before the migration Job"
    )
    assert writer.failures == [], writer.failures[:10]
    assert writer.acked
    assert deployed.count_users(writer.acked) == len(writer.acked)


# 6 ------------------------------------------------------------------------------------------------------------
def delivering_pod(deployed: Deployed) -> str:
    """The pod delivering the subscription: the only one reporting its lag (the others hold no lease)."""
    for pod in deployed.ready_pods():
        status, body = http("GET", f"http://{pod['status']['podIP']}:9090/metrics", token=False)
        if status == 200 and b'userservice_subscription_lag_events{subscription="user-events"}' in body:
            return str(pod["metadata"]["name"])
    raise AssertionError("no pod reports the subscription's lag")


def test_6_pod_deleted_under_load_loses_no_acknowledged_write(deployed: Deployed) -> None:
    """The pod delivering the subscription is deleted while users are written: no acknowledged write is lost, and
    every one of them reaches the receiver, in order, once another pod has taken the subscription over."""
    victim = wait_until("a pod delivers the subscription", lambda: delivering_pod(deployed), 60)
    with Writer(deployed.http, threads=2, limit=300) as writer:
        time.sleep(3)
        kubectl("-n", deployed.namespace, "delete", "pod", victim, "--wait=false")
        wait_until(
            "Deployment recovers",
            lambda: (
                victim not in {p["metadata"]["name"] for p in deployed.pods()}
                and len(deployed.ready_pods()) >= 2
            ),
            timeout=180,
            every=2,
        )
        time.sleep(3)
    assert writer.acked
    assert deployed.count_users(writer.acked) == len(writer.acked)
    print(f"pod deletion: {len(writer.acked)} acknowledged writes, {len(writer.failures)} failed requests")
    # Writers run in parallel, so the commit order is the outbox's, not `acked`'s.
    wait_until(
        "every acknowledged user reaches the receiver",
        lambda: set(writer.acked) <= set(received(deployed)),
        120,
    )
    got = received(deployed)
    stream = deployed.postgres.psql(
        "SELECT subject FROM user_events WHERE type = 'io.userservice.user.created.v1' ORDER BY tx, seq",
        deployed.database,
    ).split()
    assert list(dict.fromkeys(got)) == [s for s in stream if s in set(got)], "not in the stream's order"
    # At least once: a pod that stops (this deletion, a scale-down) may deliver its in-flight event again.
    print(f"subscription: {len(set(got))} users delivered, {len(got) - len(set(got))} delivered twice")


def operator_pod() -> dict[str, Any]:
    [pod] = get_json(
        "-n", OPERATOR_NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=userservice-operator"
    )["items"]  # fmt: skip
    return dict(pod)


def host_pid_of_pod_process(pod_uid: str, command: str) -> str:
    """The host pid of the pod's process whose command line holds `command` (its cgroup path names the pod, with
    dashes under the cgroupfs driver, underscores under systemd's)."""
    found = []
    for line in run("ps", "-eo", "pid=,args=").splitlines():
        pid, _, args = line.strip().partition(" ")
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue  # ended meanwhile
        if command in args and (pod_uid in cgroup or pod_uid.replace("-", "_") in cgroup):
            found.append(pid)
    assert len(found) == 1, found
    return found[0]


def test_6_the_kubelet_restarts_an_operator_that_stops_answering_and_it_reconciles_again(
    deployed: Deployed,
) -> None:
    """An operator that hangs (here: its process stopped from the host, which this one-node cluster is) fails its
    liveness probe; the kubelet restarts the container, which takes the Lease back and repairs a deleted child."""
    pod = operator_pod()
    name, restarts = pod["metadata"]["name"], pod["status"]["containerStatuses"][0]["restartCount"]
    uid = pod["metadata"]["uid"]
    pid = host_pid_of_pod_process(uid, "userservice-operator")
    started = time.monotonic()
    run("kill", "-STOP", pid)
    wait_until(
        "the kubelet restarts the stopped operator",
        lambda: operator_pod()["status"]["containerStatuses"][0]["restartCount"] > restarts,
        timeout=180,
        every=2,
    )
    restarted = time.monotonic() - started
    kubectl("-n", deployed.namespace, "delete", "service", NAME, "--wait=true")
    wait_until(
        "the restarted operator recreates the deleted Service",
        lambda: kubectl("-n", deployed.namespace, "get", "service", NAME, check=False).strip() != "",
        timeout=180,
        every=2,
    )
    assert operator_pod()["metadata"]["name"] == name  # the same pod: its container was restarted in place
    print(
        f"operator stopped: restarted after {restarted:.0f} s, Service recreated after "
        f"{time.monotonic() - started:.0f} s"
    )


# 7 ------------------------------------------------------------------------------------------------------------
def test_7_deleting_the_usvc_garbage_collects_its_children(deployed: Deployed) -> None:
    kinds = "deployment,service,hpa,pdb,job,servicemonitor,replicaset,pod,serviceaccount,networkpolicy,role,rolebinding"
    binding = f"userservice-access-reviewer:{deployed.namespace}:{NAME}"
    name_of = ("get", "clusterrolebinding", binding, "-o", "jsonpath={.metadata.name}")
    assert kubectl(*name_of) == binding
    selector = f"app.kubernetes.io/instance={NAME}"
    assert kubectl("-n", deployed.namespace, "get", kinds, "-l", selector, "-o", "name").strip()
    kubectl("-n", deployed.namespace, "delete", "userservice", NAME, "--wait=true", timeout=180)
    wait_until(
        "children garbage-collected",
        lambda: kubectl("-n", deployed.namespace, "get", kinds, "-l", selector, "-o", "name").strip() == "",
        timeout=180,
        every=3,
    )
    # cluster-scoped, so not garbage-collected: the operator deletes it
    wait_until("access binding deleted", lambda: kubectl(*name_of, check=False).strip() == "", 60)
