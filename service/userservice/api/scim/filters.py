"""SCIM filters (RFC 7644 §3.4.2.2) as a domain search (domain/search.py).

The grammar is scim2-models' (the RFC's ABNF with its errata, a lark LALR parser that refuses more than 32 nested
expressions); this module bounds the input before it is parsed (FILTER_MAX characters, LITERAL_MAX per value,
TERMS_MAX comparisons) and maps each attribute onto an indexed field. Anything else is 400 invalidFilter.

The parser keeps the trees of the last 1024 filters it read, but identity providers look users up by ever new
values (`userName eq "…"`), so each lookup would be parsed anew (some 90 µs, the most of such a request). The string
literals are therefore taken out first (the grammar's own STRING rule), the filter's shape (`userName eq "0"`) is
parsed, from the cache after its first time, and the values are put back into its tree.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from uuid import UUID

from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path import (
    AttrPath,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)

from userservice.api.scim.discovery import USER_SCHEMA
from userservice.api.scim.errors import ScimError
from userservice.domain import search
from userservice.domain.errors import InvalidArgument
from userservice.domain.listing import FILTER_MAX, parse_timestamp

LITERAL_MAX = 256
"""Longest value a comparison may carry: longer than any stored value of any field."""
TERMS_MAX = 32
"""Most comparisons one filter may hold: each becomes a condition of one SQL statement."""

# SCIM attribute (lower case, as names are case-insensitive) -> the user field it is.
FIELDS = {
    "username": "nickname",
    "name.givenname": "first_name",
    "name.familyname": "last_name",
    "emails": "email",
    "emails.value": "email",
    "externalid": "external_id",
    "id": "id",
    "active": "active",
    "meta.created": "created_at",
    "meta.lastmodified": "updated_at",
}
# Attributes every user has the same value of: emails.type "work", emails.primary true, meta.resourceType "User".
CONSTANTS: dict[str, str | bool] = {
    "emails.type": "work",
    "emails.primary": True,
    "meta.resourcetype": "User",
}
FILTERABLE = ", ".join(sorted({*FIELDS, *CONSTANTS}))
# RFC 7644's string literal, as scim2-models' lexer reads it (JSON's string): outside one, a valid filter has no '"'.
_STRING = re.compile(r'"(?:[^"\\\x00-\x1F]|\\["\\/bfnrt]|\\u[0-9A-Fa-f]{4})*"')


def invalid_filter(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def parse(text: str) -> search.Query:
    if len(text) > FILTER_MAX:
        raise invalid_filter(f"a filter may be at most {FILTER_MAX} characters, not {len(text)}")
    literals: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        literals.append(json.loads(match.group(0)))
        return f'"{len(literals) - 1}"'

    try:
        node = ScimFilter(_STRING.sub(placeholder, text)).ast
    except InvalidFilterException:
        try:  # the error as the caller wrote it (its columns)
            ScimFilter(text)
        except InvalidFilterException as exc:
            raise invalid_filter(f"the filter is not valid: {exc.detail}") from None
        raise
    return _Translator(literals).query(node, "")


class _Translator:
    def __init__(self, literals: list[str]) -> None:
        self.terms, self.literals = 0, literals

    def query(self, node: FilterNode, within: str) -> search.Query:
        if isinstance(node, LogicalExpr):
            terms = tuple(self.query(term, within) for term in node.terms)
            return search.AllOf(terms) if node.op == LogicalOperator.and_ else search.AnyOf(terms)
        if isinstance(node, Not):
            return search.Negation(self.query(node.expr, within))
        if isinstance(node, ValuePath):
            if within or _attribute(node.attr_path, "") != "emails":
                raise invalid_filter(f"only emails[...] selects values, not {node.attr_path}")
            return self.query(node.val_filter, "emails")
        if isinstance(node, Present | Comparison):
            self.terms += 1
            if self.terms > TERMS_MAX:
                raise invalid_filter(f"a filter may hold at most {TERMS_MAX} comparisons")
            if isinstance(node, Present):
                return self.present(_attribute(node.attr_path, within))
            return self.compare(_attribute(node.attr_path, within), node.op.value, node.value)
        raise invalid_filter(f"unsupported filter expression {node}")

    def present(self, attribute: str) -> search.Query:
        if attribute in CONSTANTS:
            return search.EVERYONE
        field = _field(attribute)
        return search.Present(field)

    def compare(self, attribute: str, op: str, value: object) -> search.Query:
        if isinstance(value, str):  # a placeholder: the literal's index
            value = self.literals[int(value)]
        if isinstance(value, str) and len(value) > LITERAL_MAX:
            raise invalid_filter(f"a filter value may be at most {LITERAL_MAX} characters")
        if attribute in CONSTANTS:
            return _constant(attribute, op, value)
        field = _field(attribute)
        if op not in search.operators_of(field):
            raise invalid_filter(f"{attribute} supports {', '.join(search.operators_of(field))}, not {op}")
        if field == "active":
            if not isinstance(value, bool):
                raise invalid_filter("active compares with true or false")
            return search.Compare(field, op, value)
        if not isinstance(value, str):
            raise invalid_filter(f"{attribute} compares with a string")
        if field == "id":
            try:
                return search.Compare(field, op, UUID(value))
            except ValueError:  # no user has an id that is not a UUID
                return search.Constant(op == "ne")
        if field in search.TIMES:
            return search.Compare(field, op, _time(attribute, value))
        if op in ("co", "ew") and len(value) < search.SUBSTRING_MIN:
            raise invalid_filter(f"{op} needs a value of at least {search.SUBSTRING_MIN} characters")
        return search.Compare(field, op, value)


def _attribute(path: AttrPath, within: str) -> str:
    """The attribute a path names, in lower case and without the User schema's URN."""
    if path.uri is not None and path.uri.lower() != USER_SCHEMA.lower():
        raise invalid_filter(f"{path.uri} is not a schema of this service; filter on {USER_SCHEMA}")
    name = path.attr.lower() + (f".{path.sub_attr.lower()}" if path.sub_attr else "")
    return f"{within}.{name}" if within else name


def _field(attribute: str) -> str:
    if attribute not in FIELDS:
        raise invalid_filter(f"cannot filter on {attribute}; filterable attributes: {FILTERABLE}")
    return FIELDS[attribute]


def _constant(attribute: str, op: str, value: object) -> search.Query:
    expected = CONSTANTS[attribute]
    if op not in ("eq", "ne"):
        raise invalid_filter(f"{attribute} supports eq, ne and pr, not {op}")
    if isinstance(expected, str):
        same = isinstance(value, str) and value.lower() == expected.lower()
    else:
        same = value is expected
    return search.Constant(same == (op == "eq"))


def _time(attribute: str, value: str) -> datetime:
    try:
        return parse_timestamp(attribute, value)
    except InvalidArgument:
        raise invalid_filter(f"{attribute} compares with a dateTime such as 2024-01-31T12:00:00Z") from None
