"""TLS on every port, and certificate rotation without a restart: the files are replaced by a pair from another
CA, and new connections (REST, management, gRPC) present it while the service keeps running."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from tests.support.certs import Pair, issue
from tests.support.service import RunningService, in_process
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


def install(pair: Pair, directory: Path) -> None:
    """As a Secret volume does: new files, then one atomic rename each."""
    for name, data in (("tls.key", pair.key_pem), ("tls.crt", pair.cert_pem)):
        (directory / f".{name}.new").write_bytes(data)
        (directory / f".{name}.new").replace(directory / name)


@pytest.fixture(scope="module")
def pairs() -> tuple[Pair, Pair]:
    return issue("first"), issue("second")


@pytest.fixture
async def served(
    pairs: tuple[Pair, Pair], database: str, tmp_path: Path
) -> AsyncIterator[tuple[RunningService, Path]]:
    install(pairs[0], tmp_path)
    env = {"TLS_CERT_FILE": str(tmp_path / "tls.crt"), "TLS_KEY_FILE": str(tmp_path / "tls.key")}
    async with in_process(database, env=env) as running:
        yield running, tmp_path


async def rest_trusts(url: str, pair: Pair) -> bool:
    """Whether a new connection to `url` presents a certificate of `pair`'s CA."""
    context = ssl.create_default_context(cadata=pair.ca_pem.decode())
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, force_close=True)) as http,
            http.get(url) as resp,
        ):
            return resp.status == 200
    except aiohttp.ClientConnectorCertificateError:
        return False


async def grpc_trusts(target: str, pair: Pair) -> bool:
    credentials = grpc.ssl_channel_credentials(root_certificates=pair.ca_pem)
    # A channel of its own subchannels: a new connection, not one shared with an earlier channel.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
        try:
            await pb_grpc.UserServiceStub(channel).ListUsers(pb.ListUsersRequest(), timeout=5)
            return True
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            return False


async def test_rest_grpc_and_management_serve_tls_and_follow_a_rotation(
    served: tuple[RunningService, Path], pairs: tuple[Pair, Pair]
) -> None:
    service, directory = served
    first, second = pairs
    api, management = f"{service.http}/openapi.json", f"{service.management}/healthz"
    assert service.http.startswith("https://") and service.management.startswith("https://")
    for check in (rest_trusts(api, first), rest_trusts(management, first), grpc_trusts(service.grpc, first)):
        assert await check
    for check in (rest_trusts(api, second), grpc_trusts(service.grpc, second)):
        assert not await check
    async with aiohttp.ClientSession() as http:  # plaintext is not served
        with pytest.raises(aiohttp.ClientError):
            async with http.get(api.replace("https://", "http://")) as resp:
                await resp.read()

    install(second, directory)
    started = time.monotonic()
    while not (
        await rest_trusts(api, second)
        and await rest_trusts(management, second)
        and await grpc_trusts(service.grpc, second)
    ):
        assert time.monotonic() - started < 15, "the rotated certificate was not served"
        await asyncio.sleep(0.5)
    assert not await rest_trusts(api, first) and not await grpc_trusts(service.grpc, first)
