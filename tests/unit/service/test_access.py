"""The access parts that need no API server: how long a token's verdict lasts, bearer parsing, the bounded
single-flight verdict cache, AUTH_MODE=none's loopback rule, and problem bodies that never echo a token."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from pathlib import Path

import pytest

from tests.support.certs import issue
from userservice.access.errors import PermissionDenied, TokenRefused
from userservice.access.gate import bearer_token, token_expiry, token_keep_seconds
from userservice.access.permissions import PERMISSIONS
from userservice.access.principal import ANONYMOUS, Principal, authtype_of
from userservice.access.verdicts import Verdicts
from userservice.api import problem
from userservice.api.http import ROUTES, rest_operations
from userservice.clients import kubernetes as kubeapi
from userservice.clients.kubernetes import from_kubeconfig
from userservice.config import Config, ConfigError
from userservice.logs import AccessSampling
from userservice.v1 import user_service_pb2 as pb

DSN = "postgresql://u@localhost/db"


def jwt(claims: object) -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(b'{}')}.{part(json.dumps(claims).encode())}.{part(b'signature')}"


def test_a_token_verdict_never_outlives_the_token() -> None:
    assert token_keep_seconds(10, None, now=1000) == 10
    assert token_keep_seconds(10, 1003, now=1000) == 3  # expires before the cache time
    assert token_keep_seconds(10, 5000, now=1000) == 10
    assert token_keep_seconds(10, 999, now=1000) <= 0  # already expired: not cached at all


def test_the_expiry_is_read_from_the_payload_and_anything_odd_is_none() -> None:
    assert token_expiry(jwt({"exp": 1234, "aud": ["x"]})) == 1234
    for odd in ("garbage", "a.b.c", jwt({"exp": "soon"}), jwt({"exp": True}), jwt([1, 2]), jwt({})):
        assert token_expiry(odd) is None


def test_bearer_tokens_are_taken_from_the_authorization_header_only() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for refused in (None, "", "Bearer ", "Basic YTpi", "abc"):
        assert bearer_token(refused) is None


def test_authtype_follows_the_username() -> None:
    assert authtype_of("system:serviceaccount:team-a:billing") == "service_account"
    assert authtype_of("alice@example.com") == "user"
    assert ANONYMOUS.authtype == "unauthenticated"
    principal = Principal("system:serviceaccount:a:b", "uid", ("g1",), "service_account")
    assert principal.throttle_key("10.0.0.7") == "principal:system:serviceaccount:a:b"
    assert ANONYMOUS.throttle_key("10.0.0.7") == "10.0.0.7"


async def test_identical_misses_share_one_lookup_and_the_cache_is_bounded() -> None:
    verdicts: Verdicts[str] = Verdicts(size=2)
    calls = 0

    async def lookup() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "yes", 60.0

    answers = await asyncio.gather(*(verdicts.load("k", lookup) for _ in range(50)))
    assert answers == ["yes"] * 50 and calls == 1
    assert verdicts.cached("k") == "yes"
    await verdicts.load("k2", lookup)
    await verdicts.load("k3", lookup)
    assert len(verdicts) == 2 and verdicts.cached("k") is None  # the oldest went first


async def test_a_failed_lookup_is_not_cached_and_reaches_every_waiter() -> None:
    verdicts: Verdicts[str] = Verdicts(size=10)

    async def failing() -> tuple[str, float]:
        await asyncio.sleep(0.01)
        raise OSError("down")

    results = await asyncio.gather(*(verdicts.load("k", failing) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert verdicts.cached("k") is None and len(verdicts) == 0


async def test_a_verdict_kept_for_no_time_is_not_cached() -> None:
    verdicts: Verdicts[str] = Verdicts(size=10)

    async def expired() -> tuple[str, float]:
        return "yes", -1.0

    assert await verdicts.load("k", expired) == "yes"
    assert verdicts.cached("k") is None


@pytest.mark.parametrize("listener", ["HTTP_HOST", "GRPC_HOST", "MANAGEMENT_HOST"])
def test_no_authentication_refuses_to_serve_on_any_non_loopback_listener(listener: str) -> None:
    loopback = {"HTTP_HOST": "127.0.0.1", "GRPC_HOST": "::1", "MANAGEMENT_HOST": "localhost"}
    env = {"DATABASE_URL": DSN, "AUTH_MODE": "none", **loopback}
    Config.from_env(env).for_serving()
    with pytest.raises(ConfigError, match=rf"AUTH_MODE=none .*loopback.*{listener}=0\.0\.0\.0"):
        Config.from_env({**env, listener: "0.0.0.0"}).for_serving()


def test_kubernetes_mode_needs_an_audience_and_a_namespace() -> None:
    with pytest.raises(ConfigError, match=r"AUTH_AUDIENCE is required.*AUTH_NAMESPACE is required"):
        Config.from_env({"DATABASE_URL": DSN}).for_serving()
    config = Config.from_env({"DATABASE_URL": DSN, "AUTH_AUDIENCE": "a", "AUTH_NAMESPACE": "n"}).for_serving()
    assert (config.auth_mode, config.auth_audience, config.auth_namespace) == ("kubernetes", "a", "n")
    with pytest.raises(ConfigError, match="AUTH_MODE must be"):
        Config.from_env({"DATABASE_URL": DSN, "AUTH_MODE": "off"}).for_serving()
    with pytest.raises(ConfigError, match="TLS_CERT_FILE and TLS_KEY_FILE"):
        Config.from_env({"DATABASE_URL": DSN, "TLS_CERT_FILE": "/tls.crt"})


def test_refusal_bodies_never_hold_the_token() -> None:
    token = jwt({"sub": "system:serviceaccount:a:b", "secret": "s3cr3t"})
    principal = Principal("system:serviceaccount:a:b", "uid", (), "service_account")
    for error in (
        TokenRefused(sent=True),
        PermissionDenied(principal.username, PERMISSIONS["EraseUser"], "ns"),
    ):
        response = problem.from_domain(error)
        assert isinstance(response.body, bytes)
        text = response.body.decode() + json.dumps(dict(response.headers))
        assert token not in text and "s3cr3t" not in text
    refused = problem.from_domain(TokenRefused(sent=False))
    assert refused.status == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="userservice"'


def test_every_operation_is_one_grpc_method_with_rest_routes_and_a_permission() -> None:
    """One table for both adapters: each gRPC method of UserService and each REST route (but /openapi.json)
    names an operation of PERMISSIONS."""
    methods = set(pb.DESCRIPTOR.services_by_name["UserService"].methods_by_name)
    assert set(PERMISSIONS) == methods == set(rest_operations())
    open_routes = [path for _, path, _, operation in ROUTES if operation is None]
    assert open_routes == ["/openapi.json"]


def test_a_kubeconfig_gives_the_server_its_ca_and_a_token_file_or_client_certificate(tmp_path: Path) -> None:
    """The current context only; inline (-data) and file PEMs; a token file re-read, not copied."""
    ca, client = issue("cluster"), issue("client")
    (tmp_path / "token").write_text("first-token\n")
    (tmp_path / "client.crt").write_bytes(client.cert_pem)
    b64 = base64.b64encode
    document = {
        "current-context": "here",
        "contexts": [
            {"name": "elsewhere", "context": {"cluster": "other", "user": "other"}},
            {"name": "here", "context": {"cluster": "c", "user": "u"}},
        ],
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://10.0.0.1:6443/",
                    "certificate-authority-data": b64(ca.ca_pem).decode(),
                },
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "tokenFile": "token",
                    "client-certificate": "client.crt",
                    "client-key-data": b64(client.key_pem).decode(),
                },
            }
        ],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(document))
    endpoint = from_kubeconfig(str(path))
    assert endpoint.server == "https://10.0.0.1:6443"
    assert endpoint.ssl.verify_mode == ssl.CERT_REQUIRED and endpoint.ssl.get_ca_certs()
    assert callable(endpoint.token) and endpoint.token() == "first-token"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client.crt", "kubeconfig", "token"]
    document["users"][0]["user"] = {}
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="needs a token, tokenFile or client certificate"):
        from_kubeconfig(str(path))
    document["clusters"][0]["cluster"]["server"] = "http://10.0.0.1"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="https"):
        from_kubeconfig(str(path))


def test_in_a_pod_the_mounted_token_is_used_and_re_read_as_the_kubelet_rotates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.crt").write_bytes(issue("cluster").ca_pem)
    (tmp_path / "token").write_text("first")
    monkeypatch.setattr(kubeapi, "SERVICE_ACCOUNT_DIR", tmp_path)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert kubeapi.in_cluster() is None  # not in a pod: KUBECONFIG is used instead
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    endpoint = kubeapi.in_cluster()
    assert endpoint is not None and endpoint.server == "https://[fd00::1]:6443"
    assert callable(endpoint.token) and endpoint.token() == "first"
    (tmp_path / "token").write_text("rotated")
    assert endpoint.token() == "first"  # read again only after TOKEN_REREAD_SECONDS
    monkeypatch.setattr(kubeapi, "TOKEN_REREAD_SECONDS", 0.0)
    assert endpoint.token() == "rotated"


def test_access_sampling_keeps_errors_writes_and_slow_requests_whatever_the_share() -> None:
    none_sampled = AccessSampling(sample=0, slow_seconds=0.1)
    assert not none_sampled.keeps("GET", 200, 0.01)
    assert not none_sampled.keeps("GET", 304, 0.01)
    assert none_sampled.keeps("GET", 404, 0.01)
    assert none_sampled.keeps("GET", 500, 0.01)
    assert none_sampled.keeps("GET", 200, 0.1)  # slow
    assert none_sampled.keeps("POST", 201, 0.01)
    assert none_sampled.keeps("PATCH", 200, 0.01)
    every = AccessSampling(sample=1, slow_seconds=0.1)
    assert all(every.keeps("GET", 200, 0.001) for _ in range(1000))
    # A share between: some lines, not all (10,000 draws at 0.5 land far from both ends).
    half = AccessSampling(sample=0.5, slow_seconds=0.1)
    kept = sum(half.keeps("GET", 200, 0.001) for _ in range(10_000))
    assert 3_000 < kept < 7_000


@pytest.mark.parametrize("share", ["-0.1", "1.5"])
def test_the_access_log_share_is_between_0_and_1(share: str) -> None:
    env = {"DATABASE_URL": "postgresql://u@localhost/db", "ACCESS_LOG_SAMPLE": share}
    with pytest.raises(ConfigError, match=f"ACCESS_LOG_SAMPLE must be 0-1 .*not {share}"):
        Config.from_env(env)
