"""Listing: filters (REST query parameters and the AIP-160 subset used by gRPC), page size, page tokens.

Pages are keyset-ordered by (created_at, id), ascending or (order_by `created_at desc`) descending. The key never
changes, so a client paging while others insert neither repeats nor skips a user that existed when it began. A page token carries the last key of its page,
the filter it was issued for, and an HMAC so that it cannot be forged or edited.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from userservice.domain.errors import FieldViolation, InvalidArgument, excerpt, invalid
from userservice.domain.fields import PREFIX_FIELDS, check_country, check_email, check_nickname, check_prefix

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_RESOLUTION = timedelta(microseconds=1)  # PostgreSQL's timestamp resolution


@dataclass(frozen=True)
class ListFilter:
    country: str | None = None
    nickname: str | None = None
    email: str | None = None
    created_after: datetime | None = None  # exclusive
    created_before: datetime | None = None  # exclusive
    show_deleted: bool = False  # soft-deleted users too (AIP-164)
    email_prefix: str | None = None  # case-insensitive
    nickname_prefix: str | None = None  # exact, like nickname
    last_name_prefix: str | None = None  # case-insensitive
    descending: bool = False  # order_by created_at desc

    def fingerprint(self) -> str:
        raw = json.dumps(asdict(self), default=str, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Position:
    """The sort key of the last user on a page."""

    created_at: datetime
    id: UUID


# A day inside the calendar's ends: a bound there, moved by its offset or by one microsecond, stays a datetime.
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def parse_timestamp(field: str, value: str) -> datetime:
    """An RFC 3339 timestamp with an offset, as UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise invalid(field, "must be an RFC 3339 timestamp such as 2024-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        raise invalid(field, "must include a time zone offset, e.g. Z or +01:00")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        utc = _EARLIEST - _RESOLUTION  # refused just below
    if not _EARLIEST <= utc <= _LATEST:
        raise invalid(field, "must be between 0001-01-02 and 9999-12-30 (UTC)")
    return utc


_EQUALITY_CHECKS = {"country": check_country, "nickname": check_nickname, "email": check_email}


def _checked(field: str, value: str, violations: list[FieldViolation]) -> str | None:
    try:
        return _EQUALITY_CHECKS[field](value)
    except ValueError as exc:
        violations.append(FieldViolation(field, str(exc)))
        return None


def _prefix(field: str, value: str, violations: list[FieldViolation], name: str) -> str | None:
    try:
        return check_prefix(field, value)
    except ValueError as exc:
        violations.append(FieldViolation(name, str(exc)))
        return None


ORDER_BY = "created_at"


def parse_order_by(text: str, field: str = "order_by") -> bool:
    """AIP-132 order_by over the one sort key: `created_at` (ascending, the default) or `created_at desc`;
    True when descending."""
    words = text.split()
    if words in ([], [ORDER_BY], [ORDER_BY, "asc"]):
        return False
    if words == [ORDER_BY, "desc"]:
        return True
    raise invalid(field, 'must be "created_at", "created_at asc" or "created_at desc"')


def filter_from_query(params: Mapping[str, str]) -> ListFilter:
    """REST: ?country=GB&nickname=…&email=…&created_after=…&created_before=…&show_deleted=true
    &email_prefix=…&nickname_prefix=…&last_name_prefix=…&order_by=created_at desc"""
    violations: list[FieldViolation] = []
    values: dict[str, object] = {}
    for name in ("country", "nickname", "email"):
        if name in params:
            values[name] = _checked(name, params[name], violations)
    for field in PREFIX_FIELDS:
        if f"{field}_prefix" in params:
            values[f"{field}_prefix"] = _prefix(
                field, params[f"{field}_prefix"], violations, f"{field}_prefix"
            )
    if "order_by" in params:
        try:
            values["descending"] = parse_order_by(params["order_by"])
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    for name in ("created_after", "created_before"):
        if name in params:
            try:
                values[name] = parse_timestamp(name, params[name])
            except InvalidArgument as exc:
                violations.extend(exc.violations)
    if "show_deleted" in params:
        try:
            values["show_deleted"] = parse_flag(params["show_deleted"])
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    if violations:
        raise InvalidArgument(violations)
    return ListFilter(**values)  # type: ignore[arg-type]


def parse_flag(text: str, field: str = "show_deleted") -> bool:
    if text in ("true", "false"):
        return text == "true"
    raise invalid(field, "must be true or false")


FILTER_MAX = 1024
"""Longest accepted gRPC filter, in characters: the longest sensible one (every field once) is ~250."""

_OPERATORS = ("<=", ">=", "=", "<", ">")


def _is_name_char(ch: str) -> bool:
    return ch == "_" or (ch.isascii() and ch.isalnum())


class _Scanner:
    """A single left-to-right pass over the filter: every character is looked at a bounded number of times,
    so parsing is linear in the (capped) length, whatever the input."""

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def skip_space(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def done(self) -> bool:
        self.skip_space()
        return self.at >= len(self.text)

    def fail(self, expected: str) -> InvalidArgument:
        rest = self.text[self.at :]
        found = f"found {excerpt(rest)}" if rest else "found the end of the filter"
        return invalid("filter", f"expected {expected} at character {self.at + 1}, {found}")

    def word(self, expected: str) -> str:
        self.skip_space()
        start = self.at
        while self.at < len(self.text) and _is_name_char(self.text[self.at]):
            self.at += 1
        if self.at == start:
            raise self.fail(expected)
        return self.text[start : self.at]

    def operator(self) -> str:
        self.skip_space()
        for op in _OPERATORS:
            if self.text.startswith(op, self.at):
                self.at += len(op)
                return op
        raise self.fail("one of =, <, <=, >, >=")

    def string(self) -> str:
        self.skip_space()
        if not self.text.startswith('"', self.at):
            raise self.fail('a quoted value such as "GB"')
        out: list[str] = []
        i = self.at + 1
        while i < len(self.text):
            ch = self.text[i]
            if ch == '"':
                self.at = i + 1
                return "".join(out)
            if ch == "\\" and i + 1 < len(self.text):
                i += 1
                ch = self.text[i]
            out.append(ch)
            i += 1
        raise self.fail("a closing quote")


def parse_filter(expression: str) -> ListFilter:
    """gRPC: the AIP-160 subset `field op "value"` joined by AND, e.g. `country = "GB" AND created_at > "…"`;
    a value ending in * is a prefix (email, nickname, last_name)."""
    if len(expression) > FILTER_MAX:
        raise invalid("filter", f"must be at most {FILTER_MAX} characters, not {len(expression)}")
    scanner = _Scanner(expression)
    values: dict[str, object] = {}
    violations: list[FieldViolation] = []
    terms = 0
    while not scanner.done():
        terms += 1
        if terms > 1 and scanner.word("AND") != "AND":
            raise invalid("filter", "terms must be joined by AND (OR and NOT are not supported)")
        name = scanner.word("a field name")
        op = scanner.operator()
        value = scanner.string()
        if name in PREFIX_FIELDS and op == "=" and value.endswith("*"):  # AIP-160 wildcard: a prefix
            values[f"{name}_prefix"] = _prefix(name, value[:-1], violations, name)
        elif name in _EQUALITY_CHECKS:
            if op != "=":
                raise invalid("filter", f"{name} supports only =")
            values[name] = _checked(name, value, violations)
        elif name == "created_at":
            if op == "=":
                raise invalid("filter", "created_at supports <, <=, > and >=")
            at = parse_timestamp("filter", value)
            if op in (">", ">="):
                values["created_after"] = at - _RESOLUTION if op == ">=" else at
            else:
                values["created_before"] = at + _RESOLUTION if op == "<=" else at
        else:
            raise invalid(
                "filter",
                f"unknown field {excerpt(name)}: use country, nickname, email, created_at, or last_name with a"
                ' trailing * (a prefix, as email and nickname also take: email = "ada*")',
            )
    if violations:
        raise InvalidArgument([FieldViolation("filter", f"{v.field} {v.description}") for v in violations])
    return ListFilter(**values)  # type: ignore[arg-type]


def resolve_page_size(requested: int | None, field: str = "page_size") -> int:
    if requested is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise invalid(field, f"must be between 1 and {MAX_PAGE_SIZE}")
    return requested


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Signs and checks page tokens with a secret shared by every replica."""

    _MAC_BYTES = 16
    MAX_LENGTH = 512  # ours are ~150 characters; anything much longer is refused before it is decoded

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[: self._MAC_BYTES]

    def encode(self, position: Position, list_filter: ListFilter) -> str:
        payload = json.dumps(
            {"t": position.created_at.isoformat(), "i": str(position.id), "f": list_filter.fingerprint()},
            separators=(",", ":"),
        ).encode()
        return _b64encode(payload) + "." + _b64encode(self._mac(payload))

    def decode(self, token: str, list_filter: ListFilter, field: str = "page_token") -> Position:
        try:
            if len(token) > self.MAX_LENGTH:
                raise ValueError("too long")
            body, mac = token.split(".")
            payload = _b64decode(body)
            valid = hmac.compare_digest(self._mac(payload), _b64decode(mac))
        except (ValueError, binascii.Error):
            valid = False
        if not valid:
            raise invalid(field, "is not a page token issued by this service")
        data = json.loads(payload)
        if data["f"] != list_filter.fingerprint():
            raise invalid(field, "was issued for different filters; repeat the first request's filters")
        return Position(datetime.fromisoformat(data["t"]), UUID(data["i"]))
