"""Whatever hash batchCreate accepts, checking a password against it costs no more than the documented ceiling of
its scheme and never fails the service. Hypothesis writes hashes of every accepted format with parameters around
each ceiling and library limit, with canonical and stray encodings; the work is computed here from the
parameters, in the unit docs/api.md defines per scheme, never from wall-clock time."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stateful.client import TRANSPORTS, Client, Transport, run_in
from tests.support.service import RunningService, in_process
from tests.support.users import new_user
from userservice.passwords import formats
from userservice.v1 import user_service_pb2_grpc as pb_grpc

# docs/api.md, "Hash formats": the work of one check and its ceiling, per scheme.
CEILINGS = {
    formats.ARGON2: 524_288,
    formats.BCRYPT: 2**13,
    formats.SCRYPT: 2**21,
    formats.PBKDF2_SHA256: 2_000_000,
}
SCRYPT_MAX_MIB = 256
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
BCRYPT64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
UNCHECKABLE = "a stored password hash could not be checked"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def encoded(*sizes: int, alphabet: str = B64, dots: bool = False) -> st.SearchStrategy[str]:
    """An encoded salt or digest: canonical base64 of a length a library takes (`sizes`) or of any length up to
    400 bytes, or any text of the alphabet (stray bits)."""
    canonical = st.one_of(st.sampled_from(sizes), st.integers(0, 400)).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    )
    text = canonical.map(b64).filter(bool)
    if dots:  # passlib's adapted base64
        text = text.map(lambda t: t.replace("+", "."))
    return st.one_of(text, text, st.text(alphabet, min_size=1, max_size=120))


def costs(usual: list[int], *edges: int) -> st.SearchStrategy[int]:
    """A value writers use, a value either side of each edge (a ceiling, a library limit), or any up to past
    the last edge."""
    return st.one_of(
        st.sampled_from(usual),
        *(st.integers(max(0, e - 2), e + 2) for e in edges),
        st.integers(0, 2 * max(edges)),
    )


argon2_hashes = st.builds(
    "$argon2{}$v=19$m={},t={},p={}${}${}".format,
    st.sampled_from(["id", "i", "d"]),
    costs([8, 64, 1024, 19_456], 65_536, 262_144),
    costs([1, 2], 8, 16),
    costs([1], 16),
    encoded(8, 16),
    encoded(16, 32, 64),
)
bcrypt_hashes = st.builds(
    "${}${:02d}${}".format,
    st.sampled_from(["2a", "2b", "2y"]),
    costs([4, 5], 13),
    st.one_of(
        st.builds(
            "{}{}".format,
            st.binary(min_size=16, max_size=16).map(b64),
            st.binary(min_size=23, max_size=23).map(b64),
        ).map(lambda text: text.translate(str.maketrans(B64, BCRYPT64))),
        st.text(BCRYPT64, min_size=53, max_size=53),
    ),
)
scrypt_hashes = st.builds(
    "$scrypt$ln={},r={},p={}${}${}".format,
    costs([1, 4, 10], 16, 21),
    costs([1, 8], 16),
    costs([1], 16),
    encoded(8, 16),
    encoded(16, 32, 64),
)
pbkdf2_hashes = st.builds(
    "$pbkdf2-sha256${}${}${}".format,
    costs([1, 1000], 2_000_000),
    encoded(8, 16, alphabet=BCRYPT64, dots=True),
    encoded(16, 32, 33, 64, alphabet=BCRYPT64, dots=True),
)


def reference_work(encoded_hash: str) -> tuple[str, int]:
    """The scheme and the work of one check, from the hash's own parameters as docs/api.md counts it."""
    if m := re.fullmatch(r"\$argon2(?:id|i|d)\$v=19\$m=(\d+),t=(\d+),p=\d+\$.*", encoded_hash):
        return formats.ARGON2, int(m[1]) * int(m[2])
    if m := re.fullmatch(r"\$2[aby]\$(\d\d)\$.{53}", encoded_hash):
        return formats.BCRYPT, 2 ** int(m[1])
    if m := re.fullmatch(r"\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$.*", encoded_hash):
        log_n, r, p = int(m[1]), int(m[2]), int(m[3])
        # OpenSSL allocates p blocks of 128 r bytes and a table of 128 r (N + 2) bytes.
        assert 128 * r * p + 128 * r * (2**log_n + 2) <= SCRYPT_MAX_MIB * 2**20, encoded_hash
        return formats.SCRYPT, 2**log_n * r * p
    if m := re.fullmatch(r"\$pbkdf2-sha256\$(\d+)\$[./A-Za-z0-9]+\$([./A-Za-z0-9]+)", encoded_hash):
        digest = base64.b64decode(m[2].replace(".", "+") + "=" * (-len(m[2]) % 4))
        return formats.PBKDF2_SHA256, int(m[1]) * math.ceil(len(digest) / 32)
    raise AssertionError(f"an accepted hash in no documented format: {encoded_hash}")


@pytest.fixture(scope="module")
async def service(database: str) -> AsyncIterator[RunningService]:
    # Every check here fails on purpose: callers and accounts are never locked.
    async with in_process(database, lockout_threshold=0, caller_lockout_threshold=0) as running:
        yield running


def test_the_documented_ceilings_are_the_services() -> None:
    assert formats.MAX_WORK == CEILINGS


async def test_every_accepted_hash_is_checked_within_its_ceiling_and_never_fails(
    http: aiohttp.ClientSession, stub: pb_grpc.UserServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    client, loop = Client(http, stub), asyncio.get_running_loop()
    caplog.set_level(logging.ERROR, logger="userservice")

    @settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(
        encoded_hash=st.one_of(argon2_hashes, bcrypt_hashes, scrypt_hashes, pbkdf2_hashes),
        transport=st.sampled_from(TRANSPORTS),
    )
    def imported(encoded_hash: str, transport: Transport) -> None:
        user = {**new_user(), "password_hash": encoded_hash}
        del user["password"]
        created = run_in(loop, client.batch_create(transport, [user]))
        assert created.kind in ("ok", "invalid"), f"importing {encoded_hash}: {created}"
        if created.kind == "invalid":
            fields = [e["field"] for e in created.body.get("errors", [])]
            assert transport == "grpc" or fields == ["requests[0].user.password_hash"], created
            return
        scheme, work = reference_work(encoded_hash)
        assert work <= CEILINGS[scheme], f"accepted {encoded_hash}: work {work:,} > {CEILINGS[scheme]:,}"
        assert formats.work(encoded_hash) == formats.Parsed(scheme, work)
        checked = run_in(loop, client.verify(transport, str(user["email"]), "not the imported password"))
        assert checked.kind == "unauthenticated", f"checking a password against {encoded_hash}: {checked}"
        uncheckable = [r for r in caplog.records if r.getMessage() == UNCHECKABLE]
        assert not uncheckable, f"accepted {encoded_hash}, which its library then refused"

    await asyncio.to_thread(imported)
