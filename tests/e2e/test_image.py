"""The built image (`make build`), run for real: `userservice migrate` then `userservice serve` against a real
PostgreSQL (tests/support/postgres.py), read-only root filesystem, non-root; REST and gRPC calls from here.
Also the operator entrypoint and the image's metadata.

IMAGE (default userservice:dev) names the image. Without a Docker engine or the image, the tests skip on a
laptop and fail in CI (tests/support/require.py)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.kube import free_port
from tests.support.postgres import create_database, drop_database
from tests.support.require import require
from tests.support.users import new_user
from userservice.v1 import user_service_pb2, user_service_pb2_grpc

pytestmark = pytest.mark.needs_docker

IMAGE = os.environ.get("IMAGE", "userservice:dev")


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    require(shutil.which("docker") is not None, "docker CLI not found (make build installs docker.io)")
    engine = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    require(engine.returncode == 0, "no Docker engine answers (`make build` starts one)")
    found = docker("image", "inspect", IMAGE, check=False)
    require(found.returncode == 0, f"image {IMAGE} not built (run `make build`)")
    return dict(json.loads(found.stdout)[0])


CONTAINER_SOCKET_DIR = "/run/postgresql"


@pytest.fixture(scope="module")
async def image_database(postgres_dsn: str) -> AsyncIterator[tuple[str, list[str]]]:
    """An empty database (the image's own `userservice migrate` creates the schema), as the container reaches
    it: (DSN, extra `docker run` arguments). A server on TCP (DATABASE_URL) is reached over the host network;
    the embedded server listens on a Unix socket only, whose socket file is bind-mounted into the container."""
    dsn = await create_database(postgres_dsn, migrated=False)
    try:
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        socket_dir = query.get("host", "")
        mounts: list[str] = []
        if socket_dir.startswith("/"):
            sockets = [
                Path(p) for p in sorted(glob.glob(f"{socket_dir}/.s.PGSQL.*")) if not p.endswith(".lock")
            ]
            assert sockets, f"no PostgreSQL socket in {socket_dir}"
            for sock in sockets:
                mounts += ["--volume", f"{sock}:{CONTAINER_SOCKET_DIR}/{sock.name}"]
            query["host"] = CONTAINER_SOCKET_DIR
            yield urlunsplit(parts._replace(query=urlencode(query))), mounts
        else:
            yield dsn, mounts
    finally:
        await drop_database(postgres_dsn, dsn)


def run_locked_down(
    *args: str, name: str | None = None, detach: bool = False, env: dict[str, str], extra: Sequence[str] = ()
) -> list[str]:
    """`docker run` as production runs it: read-only root, no capabilities, no privilege escalation, a tmpfs
    /tmp, host network (the test's PostgreSQL and ports are on loopback)."""
    cmd = ["run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp:size=16m",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *extra]  # fmt: skip
    if name:
        cmd += ["--name", name]
    if detach:
        cmd.append("--detach")
    for key, value in env.items():
        cmd += ["--env", f"{key}={value}"]
    return [*cmd, IMAGE, *args]


@pytest.fixture(scope="module")
def served(image: dict[str, Any], image_database: tuple[str, list[str]]) -> Iterator[dict[str, Any]]:
    dsn, mounts = image_database
    env = {"DATABASE_URL": dsn, "LOG_FORMAT": "json"}
    migrate = docker(*run_locked_down("userservice", "migrate", env=env, extra=mounts), timeout=120)
    http_port, grpc_port, management_port = free_port(), free_port(), free_port()
    name = f"userservice-e2e-{uuid.uuid4().hex[:8]}"
    serve_env = env | {
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(grpc_port),
        "MANAGEMENT_HOST": "127.0.0.1",
        "MANAGEMENT_PORT": str(management_port),
        "AUTH_MODE": "none",  # allowed: every listener is on loopback
    }
    docker(*run_locked_down(name=name, detach=True, env=serve_env, extra=mounts))
    base = f"http://127.0.0.1:{http_port}"
    management = f"http://127.0.0.1:{management_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{management}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            state = docker("inspect", "--format", "{{.State.Running}}", name, check=False)
            assert state.stdout.strip() == "true", (
                f"container exited:\n{docker('logs', name, check=False).stderr}"
            )
            assert time.monotonic() < deadline, (
                f"not ready in 60s:\n{docker('logs', name, check=False).stderr}"
            )
            time.sleep(0.5)
        yield {
            "http": base,
            "grpc": f"127.0.0.1:{grpc_port}",
            "management": management,
            "name": name,
            "migrate": migrate,
        }
    finally:
        docker("stop", "--time", "20", name, check=False, timeout=60)


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_image_runs_as_non_root_with_both_entrypoints_and_oci_labels(image: dict[str, Any]) -> None:
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["userservice", "serve"]
    labels = config["Labels"]
    for key in ("title", "version", "revision", "created", "licenses", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert {"8080/tcp", "50051/tcp", "9090/tcp"} <= set(config.get("ExposedPorts", {}))
    out = docker(*run_locked_down("sh", "-c", "id -u; command -v gcc cc pip || true", env={})).stdout.split()
    assert out == ["10001"], f"uid or a compiler/pip in the runtime image: {out}"


def test_operator_entrypoint_help(image: dict[str, Any]) -> None:
    out = docker(*run_locked_down("userservice-operator", "--help", env={})).stdout
    assert "usage: userservice-operator" in out and "--all-namespaces" in out


def test_service_entrypoint_help(image: dict[str, Any]) -> None:
    out = docker(*run_locked_down("userservice", "--help", env={})).stdout
    assert "serve" in out and "migrate" in out


def test_health_readiness_and_metrics(served: dict[str, Any]) -> None:
    for path in ("/healthz", "/readyz"):
        status, _, _ = http("GET", served["management"] + path)
        assert status == 200, path
    status, _, body = http("GET", served["management"] + "/metrics")
    assert status == 200 and b"userservice_ready 1.0" in body


def test_rest_create_then_get(served: dict[str, Any]) -> None:
    user = new_user()
    status, headers, body = http("POST", served["http"] + "/v1/users", user)
    assert status == 201, body
    created = json.loads(body)
    assert created["email"] == user["email"] and "password" not in created
    location = headers["Location"]
    status, headers, body = http("GET", served["http"] + location if location.startswith("/") else location)
    assert status == 200, body
    got = json.loads(body)
    assert got["id"] == created["id"] and got["nickname"] == user["nickname"]
    assert headers.get("ETag")


def test_grpc_health_and_get_user(served: dict[str, Any]) -> None:
    status, _, body = http("POST", served["http"] + "/v1/users", new_user())
    assert status == 201, body
    user_id = json.loads(body)["id"]
    with grpc.insecure_channel(served["grpc"]) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        got = user_service_pb2_grpc.UserServiceStub(channel).GetUser(
            user_service_pb2.GetUserRequest(id=user_id), timeout=10
        )
        assert got.id == user_id
