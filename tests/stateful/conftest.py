"""The stateful tier: the real service on real PostgreSQL, driven by model-based state machines and concurrent
callers. The REST session and gRPC stub fixtures are the integration tier's; `service` is defined per module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.integration.service.conftest import http, stub
from userservice.store.db import create_pool

__all__ = ["http", "pool", "stub"]


@pytest.fixture(scope="module")
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    """The tests' own connections to the service's database, for what only the store shows."""
    pool = await create_pool(database, 4, 30)
    yield pool
    await pool.close()
