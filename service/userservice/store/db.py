"""The asyncpg connection pool and its per-connection setup."""

from __future__ import annotations

import json

import asyncpg

# Failures that mean "the database cannot serve right now", not "the request is wrong": adapters answer them with
# 503 / UNAVAILABLE so clients retry, instead of a 500.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,
    asyncpg.TooManyConnectionsError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, max_size: int, command_timeout: float) -> asyncpg.Pool:
    """Connections open on demand (min_size=0), so the service starts, and reports not-ready, while the
    database is still unreachable."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=max_size,
        command_timeout=command_timeout,
        init=_init_connection,
        server_settings={"application_name": "userservice"},
    )
    return pool


async def load_secret(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> bytes:
    value: bytes = await conn.fetchval("SELECT value FROM service_secrets WHERE name = $1", name)
    return value
