"""Read-your-writes through a real streaming replica: the client's session sends the consistency token of its
newest write with its reads, so while the replica's replay is paused a read still sees the write (the service
waits, then answers from the primary); a session without that token is served stale data by the replica."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from tests.integration.clients.support import user
from tests.support.replication import Replicated, until_in_rotation
from tests.support.service import RunningService, in_process
from userservice_client import Client, errors, messages


@pytest.fixture(scope="module")
async def service(replicated: Replicated, replicated_database: str) -> AsyncIterator[RunningService]:
    """Reads without a token go to the replica, so only the token keeps a read from being stale."""
    async with in_process(
        replicated.primary.dsn(replicated_database),
        database_read_url=replicated.standby.dsn(replicated_database),
        reads_without_token="replica",
        read_token_wait=0.3,
        replica_probe_interval=0.1,
        replica_max_lag=60.0,
    ) as running:
        async with aiohttp.ClientSession(base_url=running.management) as management:
            await until_in_rotation(management, 1)
        yield running


async def test_a_session_reads_its_own_writes_while_the_replica_lags(
    service: RunningService, replicated: Replicated, replicated_database: str
) -> None:
    standby = await asyncpg.connect(replicated.standby.dsn(replicated_database))
    try:
        await standby.execute("SELECT pg_wal_replay_pause()")
        async with Client(service.grpc) as session:
            created = await session.create_user(user())
            token = session.consistency_token
            assert token is not None
            assert (await session.get_user(created.id)).nickname == created.nickname
            listed = await session.list_users(filter=f'nickname = "{created.nickname}"')
            assert [u.id for u in listed.users] == [created.id]

            updated = await session.update_user(
                messages.User(id=created.id, first_name="Paused"), ["first_name"]
            )
            assert session.consistency_token != token  # the newer write's
            assert (await session.get_user(created.id)).first_name == updated.first_name == "Paused"

            other = session.new_session()  # same channel, no writes of its own: the replica answers
            assert other.consistency_token is None
            with pytest.raises(errors.NotFound):
                await other.get_user(created.id)
    finally:
        await standby.execute("SELECT pg_wal_replay_resume()")
        await standby.close()
