"""SQL for searches (domain/search.py): every comparison on the expression of an index (migrations 0007, 0010), with
bound parameters only; pages in (created_at, id) order over the live users."""

from __future__ import annotations

import asyncpg

from userservice.domain.listing import Position
from userservice.domain.model import User
from userservice.domain.search import (
    EXACT_TEXT,
    FOLDED_TEXT,
    AllOf,
    AnyOf,
    Compare,
    Constant,
    Negation,
    Present,
    Query,
)
from userservice.store.users import COLUMNS, row_user

# The expression each field is compared by, and the one its value is put in (the same on both sides: lower() as
# PostgreSQL does it; binary order, so that ranges and prefixes are ranges of the index).
_COLUMN = {
    **{field: f'lower({field}) COLLATE "C"' for field in FOLDED_TEXT},
    "external_id": 'external_id COLLATE "C"',
    "created_at": "created_at",
    "updated_at": "updated_at",
    "id": "id",
}
_VALUE = {
    **{field: 'lower({}::text) COLLATE "C"' for field in FOLDED_TEXT},
    "external_id": '{}::text COLLATE "C"',
    "created_at": "{}::timestamptz",
    "updated_at": "{}::timestamptz",
    "id": "{}::uuid",
}
_ORDER = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
# Sorts after every character a stored value may hold (U+10FFFF is a noncharacter, refused in every field).
_PAST_PREFIX = "\U0010ffff"
_LIVE = "delete_time IS NULL"


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _Builder:
    def __init__(self) -> None:
        self.args: list[object] = []

    def arg(self, value: object) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def sql(self, query: Query) -> str:
        if isinstance(query, Constant):
            return "true" if query.value else "false"
        if isinstance(query, Present):
            return "true" if query.field not in EXACT_TEXT else f"{query.field} IS NOT NULL"
        if isinstance(query, Negation):
            return f"NOT ({self.sql(query.term)})"
        if isinstance(query, AllOf | AnyOf):
            joiner = " AND " if isinstance(query, AllOf) else " OR "
            return "(" + joiner.join(self.sql(term) for term in query.terms) + ")"
        return self.compare(query)

    def compare(self, term: Compare) -> str:
        field = term.field
        if field == "active":
            # Written out, not a parameter: a generic plan must see "NOT active" to use the partial index of the
            # deactivated users.
            wanted = term.value if term.op == "eq" else not term.value
            return "active" if wanted else "NOT active"
        column = _COLUMN[field]
        if term.op in ("co", "ew"):
            # The trigram index is on lower(column) itself (LIKE needs no binary collation).
            pattern = "%" + _like_escaped(str(term.value))
            pattern += "%" if term.op == "co" else ""
            return f"lower({field}) LIKE lower({self.arg(pattern)}::text)"
        value = _VALUE[field].format(self.arg(term.value))
        if term.op == "sw":
            high = _VALUE[field].format(f"({self.arg(term.value)}::text || {self.arg(_PAST_PREFIX)}::text)")
            return f"({column} >= {value} AND {column} < {high})"
        if term.op == "ne":
            # Either side of the value: two ranges of the index. A user without the field (external_id) is not
            # equal to any value.
            missing = f"{field} IS NULL OR " if field in EXACT_TEXT else ""
            return f"({missing}{column} < {value} OR {column} > {value})"
        # A comparison with a missing value is false, not unknown, so that NOT of it holds.
        guard = f"{field} IS NOT NULL AND " if field in EXACT_TEXT else ""
        return f"({guard}{column} {_ORDER[term.op]} {value})"


def where(query: Query) -> tuple[str, list[object]]:
    """The WHERE condition over live users, and its arguments."""
    builder = _Builder()
    condition = builder.sql(query)
    return f"{_LIVE} AND {condition}", builder.args


def page_query(query: Query, after: Position | None, offset: int, limit: int) -> tuple[str, list[object]]:
    """The SQL of one page: after the anchor `after` (keyset), skipping `offset` more rows."""
    condition, args = where(query)
    if after is not None:
        args += [after.created_at, after.id]
        condition += f" AND (created_at, id) > (${len(args) - 1}, ${len(args)})"
    args += [offset, limit]
    sql = (
        f"SELECT {COLUMNS} FROM users WHERE {condition} "
        f"ORDER BY created_at, id OFFSET ${len(args) - 1} LIMIT ${len(args)}"
    )
    return sql, args


def count_query(query: Query) -> tuple[str, list[object]]:
    condition, args = where(query)
    return f"SELECT count(*) FROM users WHERE {condition}", args


async def page(
    conn: asyncpg.Connection | asyncpg.Pool, query: Query, after: Position | None, offset: int, limit: int
) -> list[User]:
    sql, args = page_query(query, after, offset, limit)
    return [row_user(row) for row in await conn.fetch(sql, *args)]


async def count(conn: asyncpg.Connection | asyncpg.Pool, query: Query) -> int:
    sql, args = count_query(query)
    total: int = await conn.fetchval(sql, *args)
    return total
