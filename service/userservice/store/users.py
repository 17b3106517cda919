"""SQL for the users table. Every function takes a connection so callers decide the transaction."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

import asyncpg

from userservice.domain.errors import AlreadyExists
from userservice.domain.listing import ListFilter, Position
from userservice.domain.model import NewUser, User

# Selected in User's field order, so a row becomes a User without a dict: User._make(row).
COLUMNS = ", ".join(User._fields)
# Which unique index protects which field, for a clear "already taken" message.
_UNIQUE_FIELDS = {
    "users_nickname_key": "nickname",
    "users_nickname_folded_key": "nickname",
    "users_email_key": "email",
    "users_external_id_key": "external_id",
}


def row_user(row: asyncpg.Record) -> User:
    return User._make(row)


def already_exists(exc: asyncpg.UniqueViolationError) -> AlreadyExists:
    field = _UNIQUE_FIELDS.get(exc.constraint_name or "", "id")
    return AlreadyExists(field, f"a user with this {field} already exists")


# The columns a new user is written with (the others take their defaults); new_row gives its values in this order.
NEW_COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "nickname",
    "email",
    "country",
    "password_hash",
    "active",
    "external_id",
    "display_name",
)
_INSERT = (
    f"INSERT INTO users ({', '.join(NEW_COLUMNS)})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(NEW_COLUMNS) + 1))}) RETURNING {COLUMNS}"
)


def new_row(user_id: UUID, new: NewUser, password_hash: str | None) -> tuple[object, ...]:
    """A new user's values in the order of NEW_COLUMNS."""
    return (
        user_id,
        new.first_name,
        new.last_name,
        new.nickname,
        new.email,
        new.country,
        password_hash,
        new.active,
        new.external_id,
        new.display_name,
    )


async def insert(conn: asyncpg.Connection, user_id: UUID, new: NewUser, password_hash: str | None) -> User:
    """`password_hash` None: a user without a password (no password verifies for it)."""
    try:
        row = await conn.fetchrow(_INSERT, *new_row(user_id, new, password_hash))
    except asyncpg.UniqueViolationError as exc:
        raise already_exists(exc) from None
    return row_user(row)


# Soft-deleted users are left out unless asked for: to every operation but undelete and erase they do not exist.
_ACTIVE = "delete_time IS NULL"


async def get(conn: asyncpg.Connection | asyncpg.Pool, user_id: UUID) -> User | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM users WHERE id = $1 AND {_ACTIVE}", user_id)
    return None if row is None else row_user(row)


async def lock(conn: asyncpg.Connection, user_id: UUID, *, deleted: bool = False) -> User | None:
    """Reads the active (or, with `deleted`, the soft-deleted) user and holds its row lock until the
    transaction ends."""
    state = "delete_time IS NOT NULL" if deleted else _ACTIVE
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM users WHERE id = $1 AND {state} FOR UPDATE", user_id)
    return None if row is None else row_user(row)


async def update(conn: asyncpg.Connection, user_id: UUID, columns: Mapping[str, object]) -> User:
    """Sets the given columns (names come from the domain's field list, never from input) and bumps version."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
    try:
        row = await conn.fetchrow(
            f"""UPDATE users SET {assignments}, version = version + 1, updated_at = now()
                WHERE id = $1 RETURNING {COLUMNS}""",
            user_id,
            *columns.values(),
        )
    except asyncpg.UniqueViolationError as exc:
        raise already_exists(exc) from None
    return row_user(row)


# Canonical search columns, each the expression of an index (migration 0007) so that every filter is served by one:
# binary (COLLATE "C") order makes a prefix a range of the index.
_SEARCH_COLUMNS = {
    "email": 'lower(email) COLLATE "C"',
    "nickname": 'nickname COLLATE "C"',
    "last_name": 'lower(last_name) COLLATE "C"',
}
# Compared by the same expression on both sides: lower() as PostgreSQL does it, not as Python does.
_SEARCH_VALUES = {
    "email": 'lower({}) COLLATE "C"',
    "nickname": '{} COLLATE "C"',
    "last_name": 'lower({}) COLLATE "C"',
}
# Sorts after every character a stored value may hold (U+10FFFF is a noncharacter, refused in every field), so
# [prefix, prefix || this) is exactly the values that start with prefix.
_PAST_PREFIX = "\U0010ffff"


def page_query(list_filter: ListFilter, after: Position | None, limit: int) -> tuple[str, list[object]]:
    """The SQL and arguments of one page (also EXPLAINed by the tests, so that each combination uses an index)."""
    conditions: list[str] = []
    args: list[object] = []

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}::text" if isinstance(value, str) else f"${len(args)}"

    if not list_filter.show_deleted:
        conditions.append(_ACTIVE)
    if list_filter.country is not None:
        conditions.append(f"country = {arg(list_filter.country)}")
    for field, exact, prefix in (
        ("email", list_filter.email, list_filter.email_prefix),
        ("nickname", list_filter.nickname, list_filter.nickname_prefix),
        ("last_name", None, list_filter.last_name_prefix),
    ):
        column, value = _SEARCH_COLUMNS[field], _SEARCH_VALUES[field]
        if exact is not None:
            conditions.append(f"{column} = {value.format(arg(exact))}")
        if prefix is not None:
            low = value.format(arg(prefix))
            high = value.format(f"({arg(prefix)} || {arg(_PAST_PREFIX)})")
            conditions.append(f"{column} >= {low} AND {column} < {high}")
    if list_filter.created_after is not None:
        conditions.append(f"created_at > {arg(list_filter.created_after)}")
    if list_filter.created_before is not None:
        conditions.append(f"created_at < {arg(list_filter.created_before)}")
    direction, beyond = ("DESC", "<") if list_filter.descending else ("ASC", ">")
    if after is not None:
        conditions.append(f"(created_at, id) {beyond} ({arg(after.created_at)}, {arg(after.id)})")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        f"SELECT {COLUMNS} FROM users {where} "
        f"ORDER BY created_at {direction}, id {direction} LIMIT {arg(limit)}"
    )
    return sql, args


async def page(
    conn: asyncpg.Connection | asyncpg.Pool, list_filter: ListFilter, after: Position | None, limit: int
) -> list[User]:
    sql, args = page_query(list_filter, after, limit)
    return [row_user(row) for row in await conn.fetch(sql, *args)]
