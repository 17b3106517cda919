"""Every limit and counter under concurrency, across two `userservice serve` processes on one PostgreSQL:
N simultaneous attempts against a threshold of k let at most k through, a success resets a consecutive count,
and at most one of N simultaneous conditional writes wins. Each burst goes to both processes over both
transports at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stateful.client import TRANSPORTS, Client, Outcome, Transport, run_in
from tests.support.service import ServiceProcess
from tests.support.users import new_user
from userservice.v1 import user_service_pb2_grpc as pb_grpc

K = 5  # an account's lockout threshold
CALLER_K = 4  # a caller's, in the processes that count only callers
PASSWORD = "correct horse battery staple"


@contextlib.contextmanager
def two_processes(database: str, env: dict[str, str]) -> Iterator[list[ServiceProcess]]:
    replicas = [ServiceProcess(database, env=env).start(), ServiceProcess(database, env=env).start()]
    try:
        yield replicas
    finally:
        for replica in replicas:
            replica.kill()


@contextlib.asynccontextmanager
async def clients(replicas: list[ServiceProcess]) -> AsyncIterator[list[tuple[Client, Transport]]]:
    """Every way in: each process over each transport."""
    async with contextlib.AsyncExitStack() as stack:
        ways = []
        for replica in replicas:
            http = await stack.enter_async_context(aiohttp.ClientSession(base_url=replica.http))
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(replica.grpc))
            client = Client(http, pb_grpc.UserServiceStub(channel))
            ways += [(client, transport) for transport in TRANSPORTS]
        yield ways


@pytest.fixture(scope="module")
async def account_limits(database: str) -> AsyncIterator[list[tuple[Client, Transport]]]:
    """Two processes that lock an account after K failures, for an hour; callers never."""
    env = {
        "LOGIN_LOCKOUT_THRESHOLD": str(K),
        "LOGIN_CALLER_LOCKOUT_THRESHOLD": "0",
        "LOGIN_LOCKOUT_BASE_SECONDS": "3600",
    }
    with two_processes(database, env) as replicas:
        async with clients(replicas) as ways:
            yield ways


@pytest.fixture(scope="module")
async def caller_limits(database: str) -> AsyncIterator[list[tuple[Client, Transport]]]:
    """Two processes that lock a caller (here always 127.0.0.1) after CALLER_K failures; accounts never."""
    env = {
        "LOGIN_LOCKOUT_THRESHOLD": "0",
        "LOGIN_CALLER_LOCKOUT_THRESHOLD": str(CALLER_K),
        "LOGIN_LOCKOUT_BASE_SECONDS": "3600",
    }
    with two_processes(database, env) as replicas:
        async with clients(replicas) as ways:
            yield ways


async def create(ways: list[tuple[Client, Transport]]) -> dict[str, Any]:
    client, transport = ways[0]
    outcome = await client.create(transport, new_user())
    assert outcome.kind == "ok", outcome
    return outcome.body


def tally(outcomes: list[Outcome]) -> Counter[str]:
    kinds = Counter(o.kind for o in outcomes)
    assert not kinds["server_error"], [str(o) for o in outcomes if o.kind == "server_error"]
    return kinds


async def burst(ways: list[tuple[Client, Transport]], calls: list[Any]) -> list[Outcome]:
    """All calls at once, spread round-robin over every process and transport; `calls` take (client, transport)."""
    return list(await asyncio.gather(*(call(*ways[n % len(ways)]) for n, call in enumerate(calls))))


@pytest.mark.parametrize("guesses", [K + 1, 6 * K])
async def test_simultaneous_wrong_passwords_let_at_most_k_through(
    account_limits: list[tuple[Client, Transport]], guesses: int
) -> None:
    user = await create(account_limits)
    outcomes = await burst(
        account_limits,
        [lambda c, t: c.verify(t, user["email"], "not the password at all")] * guesses,
    )
    kinds = tally(outcomes)
    assert kinds["unauthenticated"] == K and kinds["locked"] == guesses - K, kinds
    client, transport = account_limits[1]
    assert (await client.verify(transport, user["nickname"], PASSWORD)).kind == "locked"


async def test_a_right_password_among_simultaneous_guesses_resets_only_if_checked_before_the_lock(
    account_limits: list[tuple[Client, Transport]],
) -> None:
    """39 wrong and one right password at once. The right one may succeed only if it was checked while fewer
    than K failures were counted; then at most K - 1 failures came before it and K after it."""
    user = await create(account_limits)
    calls = [lambda c, t: c.verify(t, user["email"], "not the password at all")] * 40
    calls[20] = lambda c, t: c.verify(t, user["email"], PASSWORD)
    kinds = tally(await burst(account_limits, calls))
    assert kinds["ok"] <= 1, kinds
    assert kinds["unauthenticated"] <= (2 * K - 1 if kinds["ok"] else K), kinds
    client, transport = account_limits[0]
    if kinds["unauthenticated"] >= K + (K - 1 if kinds["ok"] else 0):
        assert (await client.verify(transport, user["nickname"], PASSWORD)).kind == "locked"


async def test_simultaneous_conditional_updates_with_one_etag_let_one_win(
    account_limits: list[tuple[Client, Transport]],
) -> None:
    user = await create(account_limits)
    calls = [
        lambda c, t, n=n: c.update(t, user["id"], {"first_name": f"Winner {chr(65 + n)}"}, user["etag"])
        for n in range(10)
    ]
    outcomes = await burst(account_limits, calls)
    kinds = tally(outcomes)
    assert kinds["ok"] == 1 and kinds["stale"] == 9, kinds
    [winner] = [o for o in outcomes if o.kind == "ok"]
    assert winner.body["version"] == user["version"] + 1


async def test_simultaneous_password_changes_from_one_current_password_let_one_win(
    account_limits: list[tuple[Client, Transport]],
) -> None:
    """Once one change wins, the others hold a stale current password: they fail like a wrong one."""
    user = await create(account_limits)
    new = [f"new passphrase number {n} for the account" for n in range(10)]
    calls = [lambda c, t, n=n: c.change_password(t, user["id"], PASSWORD, new[n]) for n in range(10)]
    outcomes = await burst(account_limits, calls)
    kinds = tally(outcomes)
    assert kinds["ok"] == 1 and kinds["unauthenticated"] + kinds["locked"] == 9, kinds
    [winner] = [n for n, o in enumerate(outcomes) if o.kind == "ok"]
    client, transport = account_limits[0]
    await client.unlock(transport, user["id"])
    assert (await client.verify(transport, user["email"], new[winner])).kind == "ok"
    assert (await client.verify(transport, user["email"], PASSWORD)).kind == "unauthenticated"


async def test_a_success_resets_the_callers_consecutive_failures(
    caller_limits: list[tuple[Client, Transport]], pool: asyncpg.Pool
) -> None:
    """Sequences of right and wrong passwords from one caller, each to any process over any transport: the
    caller is locked exactly when its last CALLER_K checked attempts all failed."""
    user = await create(caller_limits)
    loop = asyncio.get_running_loop()

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(attempts=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=12))
    def sequence(attempts: list[tuple[bool, int]]) -> None:
        run_in(loop, pool.execute("DELETE FROM credential_failures WHERE scope = 'caller'"))
        consecutive = 0
        for n, (right, way) in enumerate(attempts):
            client, transport = caller_limits[way]
            password = PASSWORD if right else "not the password at all"
            outcome = run_in(loop, client.verify(transport, user["nickname"], password))
            expected = "locked" if consecutive >= CALLER_K else "ok" if right else "unauthenticated"
            assert outcome.kind == expected, (
                f"attempt {n}: expected {expected} after {consecutive} consecutive failures, got {outcome}"
            )
            if expected != "locked":
                consecutive = 0 if right else consecutive + 1

    await asyncio.to_thread(sequence)
