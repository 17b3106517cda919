"""Liveness and readiness, shared by /healthz, /readyz and grpc.health.v1."""

from __future__ import annotations

import asyncio

import asyncpg

from userservice.store.migrator import pending_versions


class Health:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._schema_current = False
        # Set on SIGTERM: readiness fails first so load balancers stop sending new work, streams end.
        self.stopping = asyncio.Event()

    async def check_ready(self) -> str | None:
        """None when ready, else why not."""
        if self.stopping.is_set():
            return "shutting down"
        try:
            async with asyncio.timeout(2):
                async with self._pool.acquire() as conn:
                    if not self._schema_current:
                        pending = await pending_versions(conn)
                        if pending:
                            return f"database schema lacks migrations {pending}: run `userservice migrate`"
                        self._schema_current = True
                    else:
                        await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            return f"database unreachable: {type(exc).__name__}"
        return None
