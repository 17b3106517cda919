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
    by_table: dict[str, list[str]] = {}
    for column in columns:
        if column["table_name"] not in skip_tables:
            by_table.setdefault(column["table_name"], []).append(column["column_name"])
    patterns = [f"%{needle.lower()}%" for needle in needles]
    found = []
    for table, names in by_table.items():  # one scan per table, a flag per column
        flags = ", ".join(
            f'coalesce(bool_or(lower("{name}"::text) LIKE ANY($1::text[])), false)' for name in names
        )
        row = await pool.fetchrow(f'SELECT {flags} FROM "{table}"', patterns)
        found += [f"{table}.{name}" for name, hit in zip(names, row, strict=True) if hit]
    return found
