"""Search the whole schema for values: what erasure and purging must have removed from every table."""

from __future__ import annotations

from collections.abc import Collection

import asyncpg


async def occurrences(
    pool: asyncpg.Pool, needles: Collection[str], skip_tables: Collection[str] = ()
) -> list[str]:
    """Every (table, column) of the schema, outside `skip_tables`, whose text form holds one of the needles,
    case-insensitively."""
    if not needles:
        return []
    columns = await pool.fetch(
        """SELECT table_name, column_name FROM information_schema.columns
           WHERE table_schema = current_schema()
             AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea')"""
    )
    assert {"users", "user_events", "idempotency_keys"} <= {c["table_name"] for c in columns}
    found = []
    for column in columns:
        table, name = column["table_name"], column["column_name"]
        if table in skip_tables:
            continue
        hits = await pool.fetchval(
            f'SELECT count(*) FROM "{table}" WHERE lower("{name}"::text) LIKE ANY($1::text[])',
            [f"%{needle.lower()}%" for needle in needles],
        )
        if hits:
            found.append(f"{table}.{name}")
    return found
