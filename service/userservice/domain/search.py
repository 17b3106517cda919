"""A search over users as a value: comparisons on the user's fields joined by and, or and not. SCIM filters are
translated into it (api/scim/filters.py); store/search.py turns it into parameterised SQL over indexes.

Only the fields and operators below exist, each served by an index, so a query that can be built can be answered
without reading rows the query does not name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

# Case-insensitive text fields (compared after lower(), as their indexes are built) and the case-exact one.
FOLDED_TEXT = frozenset({"nickname", "email", "first_name", "last_name"})
EXACT_TEXT = frozenset({"external_id"})
TIMES = frozenset({"created_at", "updated_at"})
# eq and ne on every field; gt ge lt le on times (a one-sided range of text would be planned, for any value, as a
# third of the table); sw on text; co and ew on the folded text (trigram indexes).
ORDERED = ("eq", "ne", "gt", "ge", "lt", "le")
SUBSTRING_MIN = 3
"""Shortest co / ew literal: a trigram index finds nothing shorter than a trigram without reading everything."""


@dataclass(frozen=True)
class Compare:
    field: str  # a user field: see FOLDED_TEXT, EXACT_TEXT, TIMES, "id", "active"
    op: str  # eq ne co sw ew gt ge lt le
    value: str | bool | datetime | UUID


@dataclass(frozen=True)
class Present:
    """The field has a value (only external_id can lack one)."""

    field: str


@dataclass(frozen=True)
class Constant:
    """A term whose answer does not depend on the user (e.g. emails[type eq "work"]: every email is the work one)."""

    value: bool


@dataclass(frozen=True)
class AllOf:
    terms: tuple[Query, ...]


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Query, ...]


@dataclass(frozen=True)
class Negation:
    term: Query


Query = Compare | Present | Constant | AllOf | AnyOf | Negation
EVERYONE: Query = Constant(True)


def operators_of(field: str) -> tuple[str, ...]:
    """The operators a field supports."""
    if field in FOLDED_TEXT:
        return ("eq", "ne", "sw", "co", "ew")
    if field in EXACT_TEXT:
        return ("eq", "ne", "sw")
    if field in TIMES:
        return ORDERED
    if field in ("id", "active"):
        return ("eq", "ne")
    return ()


def fingerprint(query: Query) -> str:
    """A stable text of the query (dataclass reprs of values that repr exactly): keys the page anchors."""
    return repr(query)
