"""Reads from a real streaming replica (a pg_basebackup standby): they go to the replica while it is current, a
read with the consistency token of a write never returns older data (replay paused: it waits, then the primary
answers), and a stopped replica leaves the rotation and comes back by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.replication import Replicated, until_in_rotation
from tests.support.service import RunningService, in_process
from tests.support.users import new_user
from userservice.domain import consistency
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

HEADER = "X-Consistency-Token"
TOKEN_WAIT = 0.3


@pytest.fixture(scope="module")
async def service(replicated: Replicated, replicated_database: str) -> AsyncIterator[RunningService]:
    async with in_process(
        replicated.primary.dsn(replicated_database),
        database_read_url=replicated.standby.dsn(replicated_database),
        read_token_wait=TOKEN_WAIT,
        replica_probe_interval=0.1,
        replica_max_lag=2.0,
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def management(service: RunningService) -> AsyncIterator[aiohttp.ClientSession]:
    """Readiness and metrics: the management port."""
    async with aiohttp.ClientSession(base_url=service.management) as session:
        yield session


async def reads(management: aiohttp.ClientSession) -> dict[tuple[str, str], float]:
    """userservice_db_reads by (pool, reason)."""
    async with management.get("/metrics") as response:
        text = await response.text()
    return {
        (s.labels["pool"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "userservice_db_reads"
        for s in family.samples
        if s.name.endswith("_total")
    }


def delta(
    after: dict[tuple[str, str], float], before: dict[tuple[str, str], float], key: tuple[str, str]
) -> float:
    return after.get(key, 0) - before.get(key, 0)


async def create(http: aiohttp.ClientSession) -> tuple[dict[str, object], str]:
    async with http.post("/v1/users", json=new_user()) as response:
        assert response.status == 201
        return await response.json(), response.headers[HEADER]


async def test_a_write_carries_a_token_and_a_read_with_it_is_served_by_the_caught_up_replica(
    http: aiohttp.ClientSession,
    management: aiohttp.ClientSession,
    replicated: Replicated,
    replicated_database: str,
) -> None:
    await until_in_rotation(management, 1)
    user, token = await create(http)
    assert consistency.decode(token, HEADER) > 0
    before = await reads(management)
    for _ in range(5):
        async with http.get(f"/v1/users/{user['id']}", headers={HEADER: token}) as response:
            assert response.status == 200
            assert (await response.json())["id"] == user["id"]
    after = await reads(management)
    assert delta(after, before, ("0", "replica")) == 5
    standby = await asyncpg.connect(replicated.standby.dsn(replicated_database))
    try:
        on_replica = await standby.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'userservice' AND datname = $1",
            replicated_database,
        )
    finally:
        await standby.close()
    assert on_replica >= 1


async def test_reads_without_a_token_stay_on_the_primary_by_default(
    http: aiohttp.ClientSession, management: aiohttp.ClientSession
) -> None:
    user, _ = await create(http)
    before = await reads(management)
    async with http.get(f"/v1/users/{user['id']}") as response:
        assert response.status == 200
    async with http.get("/v1/users", params={"page_size": "5"}) as response:
        assert response.status == 200
    after = await reads(management)
    assert delta(after, before, ("primary", "no_token")) == 2
    assert delta(after, before, ("0", "replica")) == 0


async def test_a_token_read_never_sees_stale_data_while_replay_is_paused(
    http: aiohttp.ClientSession,
    management: aiohttp.ClientSession,
    replicated: Replicated,
    replicated_database: str,
) -> None:
    await until_in_rotation(management, 1)
    user, _ = await create(http)
    await replicated.wait_replayed(replicated_database)
    standby = await asyncpg.connect(replicated.standby.dsn(replicated_database))
    try:
        await standby.execute("SELECT pg_wal_replay_pause()")
        async with http.patch(f"/v1/users/{user['id']}", json={"first_name": "Paused"}) as response:
            assert response.status == 200
            token = response.headers[HEADER]
        # The replica still has the old name: a read there would be stale.
        assert await standby.fetchval("SELECT first_name FROM users WHERE id = $1::uuid", user["id"]) == "Ada"
        before = await reads(management)
        started = time.monotonic()
        async with http.get(f"/v1/users/{user['id']}", headers={HEADER: token}) as response:
            assert response.status == 200
            assert (await response.json())["first_name"] == "Paused"
        assert time.monotonic() - started >= TOKEN_WAIT
        async with http.get(
            "/v1/users", params={"nickname": str(user["nickname"])}, headers={HEADER: token}
        ) as response:
            assert [u["first_name"] for u in (await response.json())["users"]] == ["Paused"]
        after = await reads(management)
        assert delta(after, before, ("primary", "token_wait_expired")) == 2
        assert delta(after, before, ("0", "replica")) == 0
    finally:
        await standby.execute("SELECT pg_wal_replay_resume()")
        await standby.close()
    before = await reads(management)
    async with http.get(f"/v1/users/{user['id']}", headers={HEADER: token}) as response:
        assert (await response.json())["first_name"] == "Paused"
    assert delta(await reads(management), before, ("0", "replica")) == 1


async def test_grpc_writes_carry_the_token_in_trailing_metadata_and_reads_accept_it(
    service: RunningService,
) -> None:
    async with grpc.aio.insecure_channel(service.grpc) as channel:
        stub = pb_grpc.UserServiceStub(channel)
        call = stub.CreateUser(pb.CreateUserRequest(user=pb.User(**new_user())))
        created = await call
        trailers = dict(await call.trailing_metadata())
        token = trailers["x-consistency-token"]
        assert consistency.decode(token, "x-consistency-token") > 0
        got = await stub.GetUser(pb.GetUserRequest(id=created.id), metadata=(("x-consistency-token", token),))
        assert got.id == created.id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetUser(
                pb.GetUserRequest(id=created.id), metadata=(("x-consistency-token", "nonsense"),)
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_malformed_token_is_refused(http: aiohttp.ClientSession) -> None:
    user, _ = await create(http)
    async with http.get(f"/v1/users/{user['id']}", headers={HEADER: "not-a-token"}) as response:
        assert response.status == 400
        assert HEADER in await response.text()


async def test_a_stopped_replica_leaves_the_rotation_reads_still_succeed_readiness_holds_and_it_comes_back(
    http: aiohttp.ClientSession, management: aiohttp.ClientSession, replicated: Replicated
) -> None:
    await until_in_rotation(management, 1)
    user, token = await create(http)
    replicated.standby.stop()
    try:
        for _ in range(3):
            async with http.get(f"/v1/users/{user['id']}", headers={HEADER: token}) as response:
                assert response.status == 200
        await until_in_rotation(management, 0)
        async with management.get("/readyz") as response:
            assert response.status == 200  # readiness never depends on a replica
        before = await reads(management)
        async with http.get(f"/v1/users/{user['id']}", headers={HEADER: token}) as response:
            assert response.status == 200
        assert delta(await reads(management), before, ("primary", "no_replica")) == 1
    finally:
        replicated.standby.start()
    await until_in_rotation(management, 1)
    before = await reads(management)
    async with http.get(f"/v1/users/{user['id']}", headers={HEADER: token}) as response:
        assert response.status == 200
    assert delta(await reads(management), before, ("0", "replica")) == 1


async def test_with_reads_without_token_set_to_replica_plain_reads_go_to_the_replica_and_lag_is_measured(
    replicated: Replicated, replicated_database: str
) -> None:
    async with (
        in_process(
            replicated.primary.dsn(replicated_database),
            database_read_url=replicated.standby.dsn(replicated_database),
            reads_without_token="replica",
            replica_probe_interval=0.1,
        ) as running,
        aiohttp.ClientSession(base_url=running.http) as http,
        aiohttp.ClientSession(base_url=running.management) as management,
    ):
        await until_in_rotation(management, 1)
        user, _ = await create(http)
        await replicated.wait_replayed(replicated_database)
        before = await reads(management)
        async with http.get(f"/v1/users/{user['id']}") as response:
            assert response.status == 200
        async with http.get("/v1/users", params={"page_size": "5"}) as response:
            assert response.status == 200
        assert delta(await reads(management), before, ("0", "replica")) == 2
        # Lag is measured per replica and is 0 once it holds everything (the primary idle or not).
        deadline = time.monotonic() + 10
        while True:
            async with management.get("/metrics") as response:
                text = await response.text()
            lag = {
                s.name: s.value
                for family in text_string_to_metric_families(text)
                if family.name in {"userservice_replica_lag_seconds", "userservice_replica_lag_bytes"}
                for s in family.samples
                if s.labels == {"replica": "0"}
            }
            if lag == {"userservice_replica_lag_seconds": 0.0, "userservice_replica_lag_bytes": 0.0}:
                break
            assert time.monotonic() < deadline, lag
            await asyncio.sleep(0.1)
        assert (
            replicated.standby.dsn(replicated_database) not in text
        )  # the replica is known by its index only


async def test_without_replicas_writes_carry_no_token_a_sent_one_is_ignored_and_a_malformed_one_refused(
    replicated: Replicated, replicated_database: str, http: aiohttp.ClientSession
) -> None:
    """The rule for a token a client sends is one, with or without replicas: a client that sends nonsense learns it
    on its laptop, not when the instance gains a replica."""
    async with http.post(
        "/v1/users", json=new_user()
    ) as response:  # the module's service reads from a replica
        issued = response.headers[HEADER]
    async with (
        in_process(replicated.primary.dsn(replicated_database)) as running,
        aiohttp.ClientSession(base_url=running.http) as plain,
        grpc.aio.insecure_channel(running.grpc) as channel,
    ):
        async with plain.post("/v1/users", json=new_user()) as response:
            assert response.status == 201
            assert HEADER not in response.headers
            user = await response.json()
        async with plain.get(f"/v1/users/{user['id']}", headers={HEADER: issued}) as response:
            assert response.status == 200  # every read is the primary's: nothing to wait for
        for garbage in ("not-a-token", "=" * 12):
            async with plain.get(f"/v1/users/{user['id']}", headers={HEADER: garbage}) as response:
                assert response.status == 400, garbage
                assert HEADER in await response.text()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pb_grpc.UserServiceStub(channel).GetUser(
                pb.GetUserRequest(id=user["id"]), metadata=(("x-consistency-token", "nonsense"),)
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
