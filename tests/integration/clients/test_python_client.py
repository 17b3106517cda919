"""The Python client against a real service that checks real ServiceAccount tokens: an exception per ErrorInfo
reason, the token file read again after rotation and never shown, retries that wait out an outage, a create whose
reply was lost retried with the same request id (one user, not two), a deadline that holds when no answer comes,
and TLS checked against a CA bundle."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.clients.conftest import TokenFiles
from tests.integration.clients.support import user, watching_retries
from tests.support.access import Setup, service_env
from tests.support.blackhole import black_hole_proxy
from tests.support.certs import issue
from tests.support.kube import free_port
from tests.support.service import RunningService, in_process
from userservice_client import Client, RetryPolicy, errors, messages

pytestmark = pytest.mark.needs_kube

# Patient enough to wait out a connection grpc-core itself backs off from (its first reconnect is after ~1 s).
LOCKOUT_THRESHOLD = 5  # the service's default (LOGIN_LOCKOUT_THRESHOLD)
PATIENT = RetryPolicy(attempts=100, initial=0.05, maximum=0.5)


@pytest.fixture(scope="module")
async def users(service: RunningService, token_files: TokenFiles) -> AsyncIterator[Client]:
    async with Client(service.grpc, token_file=token_files.allowed) as client:
        yield client


def port(service: RunningService) -> int:
    return int(service.grpc.rsplit(":", 1)[1])


async def test_each_error_reason_is_an_exception_of_its_own(
    users: Client, service: RunningService, token_files: TokenFiles, tmp_path: Path
) -> None:
    with pytest.raises(errors.NotFound):
        await users.get_user(str(uuid.uuid4()))

    first = await users.create_user(user())
    with pytest.raises(errors.AlreadyExists) as taken:
        await users.create_user(user(nickname=first.nickname))
    assert taken.value.field == "nickname"

    stale = first.etag
    await users.update_user(messages.User(id=first.id, first_name="Augusta"), ["first_name"])
    with pytest.raises(errors.EtagMismatch):
        await users.update_user(messages.User(id=first.id, first_name="Ada", etag=stale), ["first_name"])

    with pytest.raises(errors.InvalidArgument) as invalid:
        await users.create_user(user(email="not an address", country="XX"))
    assert {v.field for v in invalid.value.violations} == {"email", "country"}

    request_id = f"test-{uuid.uuid4()}"
    await users.create_user(user(), request_id=request_id)
    with pytest.raises(errors.RequestIdReused):
        await users.create_user(user(), request_id=request_id)

    for _ in range(LOCKOUT_THRESHOLD):
        with pytest.raises(errors.WrongCredentials):
            await users.verify_password(first.nickname, "not the password at all")
    with pytest.raises(errors.Locked) as locked:
        await users.verify_password(first.nickname, "not the password at all")
    assert locked.value.retry_after is not None and locked.value.retry_after > 0

    async with Client(service.grpc, token_file=token_files.refused) as refused:
        with pytest.raises(errors.PermissionDenied) as denied:
            await refused.create_user(user())
    assert (denied.value.verb, denied.value.resource) == ("create", "users")

    garbage = tmp_path / "garbage"
    garbage.write_text("not-a-token")
    async with Client(service.grpc, token_file=garbage) as nobody:
        with pytest.raises(errors.Unauthenticated):
            await nobody.get_user(first.id)


async def test_a_rotated_token_file_is_read_again_and_the_token_is_never_shown(
    service: RunningService, callers: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The kubelet swaps a projected token in with a rename; the next call sends the new token."""
    token_file = tmp_path / "token"
    token_file.write_text(callers.tokens["may-nothing"])
    caplog.set_level(logging.DEBUG)
    async with Client(service.grpc, token_file=token_file) as client:
        with pytest.raises(errors.PermissionDenied) as denied:
            await client.list_users()
        assert denied.value.verb == "list"
        rotated = tmp_path / "token.new"
        rotated.write_text(callers.tokens["may-all"] + "\n")
        os.replace(rotated, token_file)
        await client.list_users()
        shown = f"{client!r} {client.__dict__!r} {denied.value!s} {denied.value!r} {caplog.text}"
    for token in (callers.tokens["may-nothing"], callers.tokens["may-all"]):
        assert token not in shown and token[-20:] not in shown


async def test_a_read_retries_until_the_service_answers(
    users: Client, service: RunningService, token_files: TokenFiles
) -> None:
    """The proxy first leads nowhere (UNAVAILABLE), then to the service: the read waits out the outage."""
    created = await users.create_user(user())
    with black_hole_proxy(free_port()) as proxy, watching_retries() as retries:
        async with Client(
            f"127.0.0.1:{proxy.port}", token_file=token_files.allowed, retry=PATIENT, deadline=60
        ) as client:
            read = asyncio.create_task(client.get_user(created.id))
            await asyncio.wait_for(retries.seen.wait(), 30)
            proxy.target_port = port(service)
            assert (await read).id == created.id
    assert retries.messages[0].startswith("retrying GetUser after UNAVAILABLE")


async def test_a_create_whose_reply_was_lost_is_retried_with_the_same_request_id(
    users: Client, service: RunningService, token_files: TokenFiles
) -> None:
    """The server creates the user, the reply never arrives and the connection breaks: the retry replays the
    first create (same request id), so there is one user and the caller gets it."""
    wanted = user()
    with black_hole_proxy(port(service)) as proxy, watching_retries() as retries:
        async with Client(
            f"127.0.0.1:{proxy.port}", token_file=token_files.allowed, retry=PATIENT, deadline=60
        ) as client:
            await client.list_users(page_size=1)  # the connection the create will use
            assert proxy.lose_replies() == 1
            create = asyncio.create_task(client.create_user(wanted))
            deadline = time.monotonic() + 30
            while not (stored := (await users.list_users(filter=f'nickname = "{wanted.nickname}"')).users):
                assert time.monotonic() < deadline, "the create never reached the service"
                await asyncio.sleep(0.05)
            assert not create.done()
            proxy.cut()
            created = await create
    assert retries.messages and retries.messages[0].startswith("retrying CreateUser after UNAVAILABLE")
    assert created.id == stored[0].id
    assert len((await users.list_users(filter=f'nickname = "{wanted.nickname}"')).users) == 1


async def test_the_deadline_ends_a_call_that_gets_no_answer(
    users: Client, service: RunningService, token_files: TokenFiles
) -> None:
    created = await users.create_user(user())
    with black_hole_proxy(port(service)) as proxy:
        async with Client(f"127.0.0.1:{proxy.port}", token_file=token_files.allowed) as client:
            await client.get_user(created.id)
            assert proxy.black_hole() == 1
            with pytest.raises(errors.DeadlineExceeded):
                await client.get_user(created.id, deadline=0.5)


async def test_tls_with_a_ca_bundle(
    database: str, callers: Setup, token_files: TokenFiles, tmp_path: Path
) -> None:
    """The server's certificate is checked against the CA bundle given; one from another CA is refused."""
    ours, theirs = issue("userservice"), issue("someone else")
    (tmp_path / "tls.crt").write_bytes(ours.cert_pem)
    (tmp_path / "tls.key").write_bytes(ours.key_pem)
    (tmp_path / "ca.crt").write_bytes(ours.ca_pem)
    (tmp_path / "other-ca.crt").write_bytes(theirs.ca_pem)
    env = {
        **service_env(callers),
        "TLS_CERT_FILE": str(tmp_path / "tls.crt"),
        "TLS_KEY_FILE": str(tmp_path / "tls.key"),
    }
    async with in_process(database, env=env) as running:
        async with Client(
            running.grpc, token_file=token_files.allowed, ca_file=tmp_path / "ca.crt"
        ) as client:
            created = await client.create_user(user())
            assert (await client.get_user(created.id)).id == created.id
        async with Client(
            running.grpc, token_file=token_files.allowed, ca_file=tmp_path / "other-ca.crt", deadline=5
        ) as client:
            with pytest.raises(errors.Unavailable):
                await client.get_user(created.id)
