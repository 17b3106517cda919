"""TLS on every port, and certificate rotation without a restart: the files are replaced by a pair from another
CA, and new connections (REST, management, gRPC) present it while the service keeps running."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.service import RunningService, in_process
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


@dataclass
class Pair:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def issue(name: str) -> Pair:
    """A CA of its own, and a server certificate for 127.0.0.1 and localhost signed by it."""
    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build(f"{name} CA", ca_key, f"{name} CA", ca_key, ca=True)
    cert = build("127.0.0.1", key, f"{name} CA", ca_key, ca=False)
    return Pair(
        ca.public_bytes(serialization.Encoding.PEM),
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


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
