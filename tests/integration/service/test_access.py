"""Who may call, against a real kube-apiserver: tokens minted with the TokenRequest API, checked by TokenReview,
permissions granted with ordinary Roles and RoleBindings, checked by SubjectAccessReview. The service itself
reviews with a ServiceAccount that may do nothing but create those two reviews."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.chart.support import OPERATOR_PKG
from tests.support.access import (
    AUDIENCE,
    CACHE_SECONDS,
    CALLERS,
    NAMESPACE,
    Setup,
    mint,
    prepare,
    sa_name,
    service_env,
)
from tests.support.kube import KubeCluster, free_port
from tests.support.service import RunningService, ServiceProcess, in_process
from tests.support.users import new_user
from userservice.access.permissions import GROUP, PERMISSIONS
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.needs_kube

API_SERVER_TOKEN_CACHE = 10.0
MISSING = str(uuid.UUID(int=1))

# Each operation over REST: method and path (bodies are empty: the access check comes before validation).
REST: dict[str, tuple[str, str]] = {
    "GetUser": ("GET", f"/v1/users/{MISSING}"),
    "ListUsers": ("GET", "/v1/users"),
    "WatchUserEvents": ("GET", "/v1/events"),
    "CreateUser": ("POST", "/v1/users"),
    "BatchCreateUsers": ("POST", "/v1/users:batchCreate"),
    "UpdateUser": ("PATCH", f"/v1/users/{MISSING}"),
    "UndeleteUser": ("POST", f"/v1/users/{MISSING}:undelete"),
    "DeleteUser": ("DELETE", f"/v1/users/{MISSING}"),
    "ChangePassword": ("POST", f"/v1/users/{MISSING}:changePassword"),
    "UnlockUser": ("POST", f"/v1/users/{MISSING}:unlock"),
    "VerifyPassword": ("POST", "/v1/users:verifyPassword"),
    "EraseUser": ("POST", f"/v1/users/{MISSING}:erase"),
    "ExportUser": ("GET", f"/v1/users/{MISSING}:export"),
}
METHODS = pb.DESCRIPTOR.services_by_name["UserService"].methods_by_name


@pytest.fixture(scope="module")
def setup(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return prepare(kube_cluster, tmp_path_factory.mktemp("access"))


@pytest.fixture(scope="module")
async def service(database: str, setup: Setup) -> AsyncIterator[RunningService]:
    async with in_process(database, env=service_env(setup)) as running:
        yield running


@pytest.fixture(scope="module")
async def channel(service: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(service.grpc) as opened:
        yield opened


async def rest(service: RunningService, operation: str, token: str | None) -> aiohttp.ClientResponse:
    """Calls the operation; returns the response, its body read (a stream is closed after its first line)."""
    method, path = REST[operation]
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if method == "PATCH":
        headers["Content-Type"] = "application/merge-patch+json"
    body = b"{}" if method in {"POST", "PATCH"} else None
    if body is not None and method == "POST":
        headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, service.http + path, data=body, headers=headers) as resp,
    ):
        if resp.content_type == "text/event-stream":
            await resp.content.readline()
        else:
            await resp.read()
        return resp


async def grpc_code(
    channel: grpc.aio.Channel, operation: str, token: str | None
) -> tuple[grpc.StatusCode, Any]:
    """The status of calling the operation with an empty request (a stream that opens counts as OK)."""
    method = METHODS[operation]
    request = getattr(pb, method.input_type.name)()
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    path = f"/{method.containing_service.full_name}/{operation}"
    try:
        if method.server_streaming:
            call = channel.unary_stream(path, request_serializer=type(request).SerializeToString)(
                request, metadata=metadata
            )
            try:
                await asyncio.wait_for(call.read(), 0.5)
            except TimeoutError:
                pass
            finally:
                call.cancel()
            if call.done() and not call.cancelled():
                code = await call.code()
                return code, None
            return grpc.StatusCode.OK, None
        await channel.unary_unary(path, request_serializer=type(request).SerializeToString)(
            request, metadata=metadata
        )
        return grpc.StatusCode.OK, None
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc


def test_every_operation_has_a_rest_route_here() -> None:
    assert set(REST) == set(PERMISSIONS) == set(METHODS)


@pytest.mark.parametrize("operation", sorted(PERMISSIONS))
async def test_a_caller_granted_the_verb_may_and_one_without_may_not(
    setup: Setup, service: RunningService, channel: grpc.aio.Channel, operation: str
) -> None:
    permission = PERMISSIONS[operation]
    granted, other = setup.tokens[sa_name(permission)], setup.tokens["may-nothing"]
    assert (await rest(service, operation, granted)).status not in {401, 403}
    assert (await grpc_code(channel, operation, granted))[0] not in {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
    denied = await rest(service, operation, other)
    assert denied.status == 403 and denied.content_type == "application/problem+json"
    code, error = await grpc_code(channel, operation, other)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    if error is not None:
        info = error_details_pb2.ErrorInfo()
        status = rpc_status.from_call(error)
        assert status is not None and status.details[0].Unpack(info)
        assert dict(info.metadata) == {
            "verb": permission.verb,
            "resource": permission.resource_name,
            "group": GROUP,
            "namespace": NAMESPACE,
        }


@pytest.mark.parametrize("operation", sorted(PERMISSIONS))
async def test_a_caller_granted_another_verb_only_may_not(
    setup: Setup, service: RunningService, channel: grpc.aio.Channel, operation: str
) -> None:
    """The check asks for this operation's verb and resource, not just any grant."""
    mine = PERMISSIONS[operation]
    other = next(p for p in PERMISSIONS.values() if p != mine)
    token = setup.tokens[sa_name(other)]
    assert (await rest(service, operation, token)).status == 403
    assert (await grpc_code(channel, operation, token))[0] == grpc.StatusCode.PERMISSION_DENIED


async def test_the_403_names_verb_resource_group_and_namespace(setup: Setup, service: RunningService) -> None:
    token = setup.tokens["may-nothing"]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{service.http}/v1/users/{MISSING}:changePassword",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        body = await resp.json(content_type=None)
    assert resp.status == 403 and body["type"].endswith("/permission-denied")
    assert body["verb"] == "update" and body["resource"] == "users/password" and body["group"] == GROUP
    for word in (
        "update",
        "users/password",
        GROUP,
        NAMESPACE,
        f"system:serviceaccount:{CALLERS}:may-nothing",
    ):
        assert word in body["detail"]
    assert token not in json.dumps(body)


def forged(audience: str = AUDIENCE) -> str:
    """A well-formed JWT with the right claims, signed by nobody the API server trusts."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {
        "aud": [audience],
        "exp": int(time.time()) + 600,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": f"system:serviceaccount:{CALLERS}:may-all",
    }
    return f"{part({'alg': 'RS256', 'kid': 'x'})}.{part(claims)}.{base64.urlsafe_b64encode(b'sig' * 40).decode()}"


@pytest.mark.parametrize("kind", ["absent", "garbage", "forged", "wrong-audience", "not-bearer"])
async def test_no_or_bad_token_is_401_with_a_bearer_challenge_and_unauthenticated(
    setup: Setup, service: RunningService, channel: grpc.aio.Channel, kind: str
) -> None:
    token = {
        "absent": None,
        "garbage": "not-a-token-" + uuid.uuid4().hex,
        "forged": forged(),
        "wrong-audience": mint(setup.cluster, "may-all", audience="someone-else")
        if kind == "wrong-audience"
        else "",
        "not-bearer": None,
    }[kind]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if kind == "not-bearer":
        headers = {"Authorization": f"Basic {base64.b64encode(b'a:b').decode()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{service.http}/v1/users", headers=headers) as resp,
    ):
        text = await resp.text()
    assert resp.status == 401 and resp.content_type == "application/problem+json"
    assert json.loads(text)["type"].endswith("/unauthenticated")
    expected = 'Bearer realm="userservice"' + ("" if kind == "absent" else ', error="invalid_token"')
    assert resp.headers["WWW-Authenticate"] == expected
    if token:
        assert token not in text
    code, error = await grpc_code(channel, "ListUsers", token)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert error is not None and (token or "\0") not in (error.details() or "")


async def test_open_paths_need_no_token(service: RunningService) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service.http}/openapi.json") as resp:
            assert resp.status == 200
        for path in ("/healthz", "/readyz", "/metrics"):
            async with http.get(service.management + path) as resp:
                assert resp.status == 200, path
            async with http.get(service.http + path) as resp:
                assert resp.status == 404, path  # not on the API port any more
    async with grpc.aio.insecure_channel(service.grpc) as opened:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        answer = await health_pb2_grpc.HealthStub(opened).Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def until(check: Callable[[], Awaitable[bool]], seconds: float) -> float:
    """Seconds until `check` holds (fails after `seconds`)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < seconds, "did not happen in time"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_a_revoked_role_binding_stops_working_within_the_cache_time(
    setup: Setup, service: RunningService, channel: grpc.aio.Channel
) -> None:
    token = mint(setup.cluster, "may-get-revoked")
    assert (await rest(service, "GetUser", token)).status == 404
    setup.cluster.kubectl("delete", "rolebinding", "may-get-revoked", "-n", NAMESPACE)

    async def refused() -> bool:
        return (await rest(service, "GetUser", token)).status == 403 and (
            await grpc_code(channel, "GetUser", token)
        )[0] == grpc.StatusCode.PERMISSION_DENIED

    await until(refused, CACHE_SECONDS + 5)


async def test_a_deleted_service_account_stops_working_within_the_cache_time(
    setup: Setup, service: RunningService, channel: grpc.aio.Channel
) -> None:
    token = mint(setup.cluster, "may-get-deleted")
    assert (await rest(service, "GetUser", token)).status == 404
    setup.cluster.kubectl("delete", "serviceaccount", "may-get-deleted", "-n", CALLERS)

    async def refused() -> bool:
        return (await rest(service, "GetUser", token)).status == 401 and (
            await grpc_code(channel, "GetUser", token)
        )[0] == grpc.StatusCode.UNAUTHENTICATED

    # The API server keeps its own verdict of a token for up to 10 s (its token cache), then ours expires.
    elapsed = await until(refused, CACHE_SECONDS + API_SERVER_TOKEN_CACHE + 5)
    print(f"a deleted ServiceAccount's token refused after {elapsed:.1f} s")


async def test_change_events_carry_the_caller(
    setup: Setup, service: RunningService, channel: grpc.aio.Channel
) -> None:
    token = setup.tokens["may-all"]
    auth = {"Authorization": f"Bearer {token}"}
    watch = pb_grpc.UserServiceStub(channel).WatchUserEvents(
        pb.WatchUserEventsRequest(), metadata=(("authorization", f"Bearer {token}"),)
    )
    await watch.initial_metadata()
    async with aiohttp.ClientSession(base_url=service.http, headers=auth) as http:
        sse = await http.get("/v1/events", timeout=aiohttp.ClientTimeout(total=30))
        assert await sse.content.readline() == b": connected\n"
        async with http.post("/v1/users", json=new_user()) as resp:
            assert resp.status == 201
            created = await resp.json()
        event: dict[str, Any] = {}
        while not event:
            line = await asyncio.wait_for(sse.content.readline(), 20)
            if line.startswith(b"data: "):
                event = json.loads(line[6:])
        sse.close()
    caller = f"system:serviceaccount:{CALLERS}:may-all"
    assert event["subject"] == created["id"]
    assert (event["authtype"], event["authid"]) == ("service_account", caller)
    message = await asyncio.wait_for(watch.read(), 20)
    watch.cancel()
    assert (message.subject, message.authtype, message.authid) == (created["id"], "service_account", caller)


async def test_the_access_log_names_the_principal_and_never_the_token(database: str, setup: Setup) -> None:
    replica = ServiceProcess(database, env={**service_env(setup), "ACCESS_LOG_SAMPLE": "1"}).start()
    token = setup.tokens["may-all"]
    try:
        async with aiohttp.ClientSession(base_url=replica.http) as http:
            async with http.get("/v1/users", headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200
            async with http.get(
                "/v1/users", headers={"Authorization": "Bearer garbage-" + token[:20]}
            ) as resp:
                assert resp.status == 401
    finally:
        replica.terminate()
        replica.wait()
    lines = [r for r in replica.logs if r.get("message") == "request" and r.get("path") == "/v1/users"]
    assert [r["principal"] for r in lines] == [f"system:serviceaccount:{CALLERS}:may-all", None]
    everything = json.dumps(replica.logs)
    assert token not in everything and token[:20] not in everything


async def test_an_unreachable_api_server_is_503_and_unavailable_not_401(
    database: str, setup: Setup, tmp_path: Path
) -> None:
    config = json.loads(setup.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    token = setup.tokens["may-all"]
    async with in_process(database, env={**service_env(setup), "KUBECONFIG": str(kubeconfig)}) as running:
        response = await rest(running, "ListUsers", token)
        assert response.status == 503 and response.headers["Retry-After"] == "1"
        async with grpc.aio.insecure_channel(running.grpc) as opened:
            assert (await grpc_code(opened, "ListUsers", token))[0] == grpc.StatusCode.UNAVAILABLE


# SCIM's routes and the operation each is checked as (the same permissions as REST and gRPC).
SCIM: dict[str, tuple[str, str]] = {
    "CreateUser": ("POST", "/scim/v2/Users"),
    "ListUsers": ("GET", "/scim/v2/Users"),
    "GetUser": ("GET", f"/scim/v2/Users/{MISSING}"),
    "UpdateUser": ("PATCH", f"/scim/v2/Users/{MISSING}"),
    "DeleteUser": ("DELETE", f"/scim/v2/Users/{MISSING}"),
}


async def scim_call(
    service: RunningService, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any, str]:
    headers = {"Content-Type": "application/scim+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body)
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            service.http + path,
            data=data or ("{}" if method in {"POST", "PATCH"} else None),
            headers=headers,
        ) as resp,
    ):
        text = await resp.text()
        return resp.status, json.loads(text) if text else None, resp.content_type


@pytest.mark.parametrize("operation", sorted(SCIM))
async def test_scim_callers_are_checked_like_every_other(
    setup: Setup, service: RunningService, operation: str
) -> None:
    method, path = SCIM[operation]
    status, _, _ = await scim_call(service, method, path, setup.tokens[sa_name(PERMISSIONS[operation])])
    assert status not in {401, 403}
    status, body, media = await scim_call(service, method, path, setup.tokens["may-nothing"])
    assert (status, body["status"], media) == (403, "403", "application/scim+json"), body
    status, body, media = await scim_call(service, method, path, None)
    assert (status, body["status"], media) == (401, "401", "application/scim+json"), body


async def test_the_provisioner_persona_provisions_over_scim(setup: Setup, service: RunningService) -> None:
    """The chart's userservice-provisioner ClusterRole, bound in the namespace, is all an identity provider needs."""
    persona = next(
        d
        for d in yaml.safe_load_all((OPERATOR_PKG / "rbac.yaml").read_text())
        if d["metadata"]["name"] == "userservice-provisioner"
    )
    name = f"idp-{uuid.uuid4().hex[:6]}"
    setup.cluster.kubectl(
        "apply",
        "-f",
        "-",
        input="\n---\n".join(
            json.dumps(d)
            for d in (
                persona,
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": CALLERS},
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "userservice-provisioner",
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": CALLERS}],
                },
            )
        ),
    )
    token = mint(setup.cluster, name)
    n = uuid.uuid4().hex[:8]
    user = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": f"idp.{n}@example.com",
        "name": {"givenName": "Ida", "familyName": "Provisioned"},
        "emails": [{"value": f"idp.{n}@example.com", "primary": True}],
        "active": True,
    }
    status, created, _ = await scim_call(service, "POST", "/scim/v2/Users", token, user)
    assert status == 201, created
    deactivate = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    }
    status, patched, _ = await scim_call(
        service, "PATCH", f"/scim/v2/Users/{created['id']}", token, deactivate
    )
    assert status == 200 and patched["active"] is False, patched
    status, listed, _ = await scim_call(
        service, "GET", f"/scim/v2/Users?filter=userName%20eq%20%22idp.{n}@example.com%22", token
    )
    assert status == 200 and listed["totalResults"] == 1
    status, _, _ = await scim_call(service, "DELETE", f"/scim/v2/Users/{created['id']}", token)
    assert status == 204
    # Nothing beyond provisioning: no password checks, no erasure.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{service.http}/v1/users/{created['id']}:erase", headers={"Authorization": f"Bearer {token}"}
        ) as resp,
    ):
        assert resp.status == 403
