"""The user's fields: limits, normalisation and checks. The single source for validation, OpenAPI and docs.

Each checker takes the raw value and returns the normalised value, or raises ValueError with a message that
is shown to the caller as is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from userservice.domain.countries import COMMON_MISTAKES, ISO_3166_ALPHA2

NAME_MAX = 100
NICKNAME_MIN, NICKNAME_MAX = 3, 32
EMAIL_MAX = 254
EMAIL_LOCAL_MAX = 64
PASSWORD_MIN, PASSWORD_MAX = 12, 128

NICKNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Deliberately simple: one '@', a dotted domain, no spaces or control characters. Deliverability is the
# mail system's job; this rejects what is certainly not an address.
EMAIL_RE = re.compile(
    r"[^@\s\x00-\x1f\x7f]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _no_controls(value: str) -> None:
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in value):
        raise ValueError("must not contain control, format or unassigned characters")


def check_name(value: object) -> str:
    text = unicodedata.normalize("NFC", _text(value)).strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > NAME_MAX:
        raise ValueError(f"must be at most {NAME_MAX} characters")
    _no_controls(text)
    if not any(ch.isalpha() for ch in text):
        raise ValueError("must contain at least one letter")
    return text


def check_nickname(value: object) -> str:
    text = _text(value)
    if not NICKNAME_MIN <= len(text) <= NICKNAME_MAX:
        raise ValueError(f"must be {NICKNAME_MIN} to {NICKNAME_MAX} characters")
    if not NICKNAME_RE.fullmatch(text):
        raise ValueError(
            "may hold only letters A-Z, digits, '.', '_' and '-', and must start with a letter or digit"
        )
    return text


def check_email(value: object) -> str:
    text = _text(value).strip()
    if len(text) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters")
    if not EMAIL_RE.fullmatch(text) or len(text.split("@", 1)[0]) > EMAIL_LOCAL_MAX:
        raise ValueError("must be an email address such as name@example.com")
    return text


def check_country(value: object) -> str:
    text = _text(value).strip().upper()
    if text in ISO_3166_ALPHA2:
        return text
    hint = f" (did you mean {COMMON_MISTAKES[text]}?)" if text in COMMON_MISTAKES else ""
    raise ValueError(f"must be an ISO 3166-1 alpha-2 country code such as GB or US{hint}")


def check_password(value: object) -> str:
    text = _text(value)
    if not PASSWORD_MIN <= len(text) <= PASSWORD_MAX:
        raise ValueError(f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if not text.strip():
        raise ValueError("must not be only whitespace")
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


@dataclass(frozen=True)
class FieldSpec:
    name: str
    description: str
    check: Callable[[object], str]
    json_schema: dict[str, object]
    write_only: bool = False


WRITABLE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "first_name",
        f"Given name, 1-{NAME_MAX} characters after trimming, with at least one letter.",
        check_name,
        {"type": "string", "minLength": 1, "maxLength": NAME_MAX},
    ),
    FieldSpec(
        "last_name",
        f"Family name, 1-{NAME_MAX} characters after trimming, with at least one letter.",
        check_name,
        {"type": "string", "minLength": 1, "maxLength": NAME_MAX},
    ),
    FieldSpec(
        "nickname",
        f"Unique handle, {NICKNAME_MIN}-{NICKNAME_MAX} characters: A-Z, a-z, 0-9, '.', '_', '-'.",
        check_nickname,
        {
            "type": "string",
            "minLength": NICKNAME_MIN,
            "maxLength": NICKNAME_MAX,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        },
    ),
    FieldSpec(
        "email",
        f"Unique email address (compared case-insensitively), at most {EMAIL_MAX} characters.",
        check_email,
        {"type": "string", "format": "email", "maxLength": EMAIL_MAX},
    ),
    FieldSpec(
        "country",
        "ISO 3166-1 alpha-2 country code, e.g. GB (lower case is accepted and upper-cased).",
        check_country,
        {"type": "string", "minLength": 2, "maxLength": 2},
    ),
    FieldSpec(
        "password",
        f"Write-only: {PASSWORD_MIN}-{PASSWORD_MAX} characters. Stored as an argon2id hash, never returned.",
        check_password,
        {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX, "writeOnly": True},
        write_only=True,
    ),
)
FIELDS_BY_NAME: dict[str, FieldSpec] = {spec.name: spec for spec in WRITABLE_FIELDS}
READ_ONLY_FIELDS: tuple[str, ...] = ("id", "created_at", "updated_at", "version", "etag")
