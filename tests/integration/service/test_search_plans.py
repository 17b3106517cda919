"""Every listing query is served by an index: with 100,000 users, no combination of filters, order, show_deleted
and page position plans a sequential scan of users, neither with its values (a custom plan) nor without them (the
generic plan a prepared statement switches to after a few runs)."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from userservice.domain.listing import ListFilter, Position
from userservice.store.users import page_query

USERS = 100_000
FILTERS: dict[str, object] = {
    "country": "NO",
    "nickname": "seed4242",
    "email": "c0ffee4242@example.com",
    "created_after": datetime(2024, 1, 1, tzinfo=UTC),
    "created_before": datetime(2025, 1, 1, tzinfo=UTC),
    "email_prefix": "abc",
    "nickname_prefix": "seed123",
    "last_name_prefix": "Deg",
}


@pytest.fixture(scope="module")
async def seeded(database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database)
    # Varied text (md5 digests), five countries, a year of creation times, every tenth user deleted.
    await conn.execute(
        """INSERT INTO users (id, first_name, last_name, nickname, email, country, password_hash, created_at,
                              updated_at, delete_time, purge_time)
           SELECT gen_random_uuid(), 'Seed', initcap(translate(substr(md5(n::text), 1, 10), '0123456789', 'ghijklmnop')),
                  'seed' || n, substr(md5(n::text || 'e'), 1, 6) || n || '@example.com',
                  (ARRAY['GB', 'FR', 'DE', 'NO', 'US'])[1 + n % 5], 'x',
                  timestamptz '2024-01-01' + n * interval '5 minutes', now(),
                  CASE WHEN n % 10 = 0 THEN now() END, CASE WHEN n % 10 = 0 THEN now() + interval '30 days' END
           FROM generate_series(1, $1) AS n""",
        USERS,
    )
    await conn.execute("ANALYZE users")
    yield conn
    await conn.close()


def combinations() -> Iterator[ListFilter]:
    for size in range(3):
        for names in itertools.combinations(FILTERS, size):
            base = ListFilter(**{name: FILTERS[name] for name in names})  # type: ignore[arg-type]
            for descending, show_deleted in itertools.product((False, True), repeat=2):
                yield replace(base, descending=descending, show_deleted=show_deleted)


def seq_scans(plan: dict[str, Any]) -> list[str]:
    found = [plan["Relation Name"]] if plan["Node Type"] == "Seq Scan" else []
    for child in plan.get("Plans", []):
        found.extend(seq_scans(child))
    return found


def indexes(plan: dict[str, Any]) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= indexes(child)
    return found


def literal(value: object) -> str:
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


async def plans(conn: asyncpg.Connection, name: str, sql: str, args: list[object]) -> dict[str, Any]:
    """The custom plan (planned for these values) and the generic one (for any values) of one query."""
    custom = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    await conn.execute(f"PREPARE {name} AS {sql}")
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        generic = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE {name}({', '.join(literal(a) for a in args)})"
        )
    finally:
        await conn.execute("RESET plan_cache_mode")
    return {kind: json.loads(plan)[0]["Plan"] for kind, plan in (("custom", custom), ("generic", generic))}


async def test_the_check_sees_a_sequential_scan(seeded: asyncpg.Connection) -> None:
    """A LIKE with a parameter pattern can use no index in a generic plan: the check must see that."""
    found = await plans(
        seeded, "probe", "SELECT id FROM users WHERE lower(email) LIKE $1::text || '%' LIMIT 5", ["ab"]
    )
    assert seq_scans(found["generic"]) == ["users"]


async def test_no_listing_query_scans_users_sequentially(seeded: asyncpg.Connection) -> None:
    assert await seeded.fetchval("SELECT count(*) FROM users") >= USERS
    position = Position(datetime(2024, 6, 1, tzinfo=UTC), uuid.uuid4())
    checked, failures = 0, []
    for list_filter in combinations():
        for after in (None, position):
            sql, args = page_query(list_filter, after, 51)
            for kind, plan in (await plans(seeded, f"q{checked}", sql, args)).items():
                if "users" in seq_scans(plan):
                    failures.append(f"{kind} plan of {list_filter} after {after}: {sql}")
            checked += 1
    assert checked == 37 * 4 * 2
    # A selective search term (a few dozen of 100,000 users) is looked up in its own index, not found by
    # walking the creation order. (With hundreds of matches, walking may rightly look cheaper to the planner.)
    for field in ("email", "nickname", "last_name"):
        for value in (FILTERS.get(f"{field}_prefix"), FILTERS.get(field)):
            if value is not None:
                name = field if value is FILTERS.get(field) else f"{field}_prefix"
                sql, args = page_query(ListFilter(**{name: value}), None, 51)  # type: ignore[arg-type]
                plan = (await plans(seeded, f"{name}_alone", sql, args))["custom"]
                assert f"users_{field}_search" in indexes(plan), (name, plan)
    assert not failures, "\n".join(failures[:5])
