"""Event retention for tests: make every event committed so far old enough to prune, and prune it."""

from __future__ import annotations

import asyncpg

from userservice.core.maintenance import prune_once


async def prune_everything_so_far(pool: asyncpg.Pool) -> None:
    """Every event committed so far passes retention: a pruning round two hours ago saw the stream's end."""
    await pool.execute(
        """INSERT INTO user_events_horizons (observed_at, tx)
           VALUES (now() - interval '2 hours', pg_snapshot_xmax(pg_current_snapshot()))"""
    )
    pruned = await prune_once(pool, event_retention=3600, failure_window=3600)
    assert pruned is not None and pruned[0] >= 1
