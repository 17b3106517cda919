"""Every SCIM filter the service accepts is answered from an index: over 100,000 users, neither the page nor the
count of any operator on any filterable attribute plans a sequential scan of users, with its values (custom plan)
or without them (the generic plan a prepared statement switches to)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from tests.integration.service.test_search_plans import USERS, indexes, plans, seq_scans
from userservice.api.scim import filters
from userservice.domain.listing import Position
from userservice.store.search import count_query, page_query

# One filter per attribute and operator the service accepts, with selective values (a few of 100,000 users).
SELECTIVE = [
    'userName eq "seed4242"',
    'userName sw "seed4242"',
    'userName co "d4242x"',
    'userName ew "d4242"',
    'emails.value eq "c0ffee4242@example.com"',
    'emails[type eq "work"].value sw "abc"',
    'emails[type eq "work" and value co "ffee424"]',
    'emails.value ew "4242@example.com"',
    'name.familyName eq "degabcdefg"',
    'name.familyName sw "Deg"',
    'name.familyName co "abcdef"',
    'name.givenName eq "seedling4242"',
    'name.givenName sw "seedling424"',
    'name.givenName ew "ling4242"',
    'externalId eq "okta-4242"',
    'externalId sw "okta-424"',
    'id eq "0b7e5b42-5c3c-4a4c-9d2c-8f1f0e0f5a11"',
    "active eq false",
    "active ne true",
    'meta.created gt "2024-12-31T00:00:00Z"',
    'meta.created le "2024-01-01T01:00:00Z"',
    'meta.lastModified ge "2030-01-01T00:00:00Z"',
    'userName eq "seed1" or emails.value eq "x@example.com" or externalId eq "okta-7"',
    'userName sw "seed4242" and not (active eq false)',
    'userName sw "seed4242" and userName ne "seed42421"',
]


@pytest.fixture(scope="module")
async def seeded(database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database)
    # Varied text (md5 digests), a year of creation times, every tenth user deleted, every fiftieth deactivated,
    # every other one with an external id.
    await conn.execute(
        """INSERT INTO users (id, first_name, last_name, nickname, email, country, password_hash, created_at,
                              updated_at, delete_time, purge_time, active, external_id)
           SELECT gen_random_uuid(), 'Seedling' || n,
                  initcap(translate(substr(md5(n::text), 1, 10), '0123456789', 'ghijklmnop')),
                  'seed' || n, substr(md5(n::text || 'e'), 1, 6) || n || '@example.com', NULL, NULL,
                  timestamptz '2024-01-01' + n * interval '5 minutes', timestamptz '2025-01-01' + n * interval '1 minute',
                  CASE WHEN n % 10 = 0 THEN now() END, CASE WHEN n % 10 = 0 THEN now() + interval '30 days' END,
                  n % 50 <> 0, CASE WHEN n % 2 = 0 THEN 'okta-' || n END
           FROM generate_series(1, $1) AS n""",
        USERS,
    )
    await conn.execute("ANALYZE users")
    yield conn
    await conn.close()


async def plan_of(conn: asyncpg.Connection, sql: str) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}"))[0]["Plan"]
    return plan


async def test_no_accepted_filter_scans_users_sequentially(seeded: asyncpg.Connection) -> None:
    assert await seeded.fetchval("SELECT count(*) FROM users") >= USERS
    anchor = Position(datetime(2024, 6, 1, tzinfo=UTC), "00000000-0000-0000-0000-000000000000")  # type: ignore[arg-type]
    failures, checked = [], 0
    for text in SELECTIVE:
        query = filters.parse(text)
        for name, (sql, args) in (
            ("count", count_query(query)),
            ("first page", page_query(query, None, 0, 100)),
            ("anchored page", page_query(query, anchor, 0, 100)),
        ):
            # A statement without parameters has one plan (EXPLAIN it as it is).
            found = (
                await plans(seeded, f"q{checked}", sql, args)
                if args
                else {"only": await plan_of(seeded, sql)}
            )
            for kind, plan in found.items():
                if "users" in seq_scans(plan):
                    failures.append(f"{kind} plan of the {name} of {text}: {sql}")
            checked += 1
    assert not failures, "\n".join(failures[:8])


async def test_a_user_name_lookup_uses_the_case_insensitive_unique_index(seeded: asyncpg.Connection) -> None:
    sql, args = page_query(filters.parse('userName eq "SEED4242"'), None, 0, 100)
    plan = (await plans(seeded, "by_user_name", sql, args))["generic"]
    assert "users_nickname_folded_key" in indexes(plan), plan
    assert [row["nickname"] for row in await seeded.fetch(sql, *args)] == ["seed4242"]
