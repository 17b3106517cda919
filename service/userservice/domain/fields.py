"""The user's fields: limits, normalisation and checks. The single source for validation, OpenAPI and docs.

Each checker takes the raw value and returns the normalised value, or raises ValueError with a message that
is shown to the caller as is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import email_validator
import precis_i18n

from userservice.domain.countries import COMMON_MISTAKES, ISO_3166_ALPHA2
from userservice.domain.password_policy import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    STRENGTH_MIN_SCORE,
    check_new_password,
)

NAME_MAX = 100
NICKNAME_MIN, NICKNAME_MAX = 3, 128
EMAIL_MAX = 254
EMAIL_LOCAL_MAX = 64
EXTERNAL_ID_MAX = 255

# A handle, or the email / UPN shape identity providers send as SCIM userName (name@domain): one '@' at most,
# followed by a domain of letters, digits, dots and hyphens.
NICKNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*(?:@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)?")
NICKNAME_RULE = (
    "may hold only letters A-Z, digits, '.', '_', '+' and '-', optionally followed by '@' and a domain, "
    "and must start with a letter or digit"
)
# Nicknames are enforced by the PRECIS UsernameCasePreserved profile (RFC 8265: width mapping, NFC, no
# spaces, controls or default-ignorables), then held to the ASCII set above, so that one canonical string
# names one user and look-alikes (a Kelvin sign for K, a fullwidth letter) become, or are refused as, the letter.
# Unique case-insensitively (SCIM's userName is not case-exact); stored as given.
_USERNAME = precis_i18n.get_profile("UsernameCasePreserved")
# Never in any text field: controls (Cc), format characters (Cf: zero-width, bidi overrides), surrogates (Cs),
# private use (Co), unassigned (Cn), line and paragraph separators (Zl, Zp).
_FORBIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _text(value: object, longest: int) -> str:
    """The string, refused when it is not one, is far too long to be a value, or holds a forbidden character."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if len(value) > 4 * longest:  # plainly too long: refuse before normalising it
        raise ValueError(f"must be at most {longest} characters")
    if value.isascii() and value.isprintable():  # the only forbidden ASCII characters are controls (Cc)
        return value
    for ch in value:
        if unicodedata.category(ch) in _FORBIDDEN:
            raise ValueError(
                f"must not contain control, format, separator, surrogate or unassigned characters (U+{ord(ch):04X})"
            )
    return value


def check_name(value: object) -> str:
    text = unicodedata.normalize("NFC", _text(value, NAME_MAX)).strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > NAME_MAX:
        raise ValueError(f"must be at most {NAME_MAX} characters")
    if not any(ch.isalpha() for ch in text):
        raise ValueError("must contain at least one letter")
    return text


def check_nickname(value: object) -> str:
    # ASCII fast path: a nickname already of the allowed characters is its own PRECIS form (no width, case or
    # normalisation mapping touches them).
    if type(value) is str and NICKNAME_MIN <= len(value) <= NICKNAME_MAX and NICKNAME_RE.fullmatch(value):
        return value
    return check_nickname_full(value)


def check_nickname_full(value: object) -> str:
    """check_nickname through the PRECIS profile, whatever the input."""
    try:
        text = _USERNAME.enforce(_text(value, NICKNAME_MAX))
    except UnicodeError:
        text = ""  # refused by the profile: the character rule below explains what is allowed
    if text and not NICKNAME_MIN <= len(text) <= NICKNAME_MAX:
        raise ValueError(f"must be {NICKNAME_MIN} to {NICKNAME_MAX} characters")
    if not NICKNAME_RE.fullmatch(text):
        raise ValueError(NICKNAME_RULE)
    return text


# The common shape of an address, all ASCII: a dot-atom local part of letters, digits, '_', '+' and '-', and a domain
# of LDH labels under an alphabetic top-level domain. email-validator answers such an address with the same local
# part and the domain in lower case; labels with "--" (Punycode and the like) and special-use domains take the full
# path, as does everything else.
_ASCII_EMAIL = re.compile(
    r"([A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def check_email(value: object) -> str:
    """The address in canonical form (email-validator: NFC, IDNA domain in lower case); unique by lower()."""
    if type(value) is str and len(value) <= EMAIL_MAX and (match := _ASCII_EMAIL.fullmatch(value)):
        local, domain = match[1], match[2].lower()
        if (
            len(local) <= EMAIL_LOCAL_MAX
            and "--" not in domain
            and domain.rpartition(".")[2] not in _SPECIAL_USE
        ):
            return f"{local}@{domain}"
    return check_email_full(value)


def check_email_full(value: object) -> str:
    """check_email through email-validator, whatever the input."""
    text = _text(value, EMAIL_MAX).strip()
    if len(text) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters")
    try:
        address = email_validator.validate_email(text, check_deliverability=False)
    except email_validator.EmailNotValidError:
        raise ValueError("must be an email address such as name@example.com") from None
    canonical: str = address.normalized
    if len(canonical) > EMAIL_MAX or len(address.local_part) > EMAIL_LOCAL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters (local part at most {EMAIL_LOCAL_MAX})")
    return canonical


def check_country(value: object) -> str:
    text = _text(value, 2).strip()
    # ASCII only: str.upper() would turn a dotless i or a long s into I or S.
    code = text.upper() if text.isascii() else ""
    if code in ISO_3166_ALPHA2:
        return code
    hint = f" (did you mean {COMMON_MISTAKES[code]}?)" if code in COMMON_MISTAKES else ""
    raise ValueError(f"must be an ISO 3166-1 alpha-2 country code such as GB or US{hint}")


def check_display_name(value: object) -> str:
    """How the user is shown (SCIM displayName): a name's rules, without the need for a letter."""
    text = unicodedata.normalize("NFC", _text(value, NAME_MAX)).strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > NAME_MAX:
        raise ValueError(f"must be at most {NAME_MAX} characters")
    return text


def check_external_id(value: object) -> str:
    """An identity provider's correlation key: opaque, compared exactly, never blank."""
    text = _text(value, EXTERNAL_ID_MAX)
    if not text.strip():
        raise ValueError("must not be empty")
    if len(text) > EXTERNAL_ID_MAX:
        raise ValueError(f"must be at most {EXTERNAL_ID_MAX} characters")
    return text


def check_active(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def check_password(value: object) -> str:
    """The password NFKC-normalised, as it is hashed; the rules live in password_policy."""
    return check_new_password(_text(value, PASSWORD_MAX))


@dataclass(frozen=True)
class FieldSpec:
    name: str
    description: str
    check: Callable[[object], object]
    json_schema: dict[str, object]
    write_only: bool = False
    # A field a create may leave out (then `default`), and one an update may clear with null.
    optional: bool = False
    nullable: bool = False
    default: object = None


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
        f"Unique handle (unique case-insensitively, stored as given; SCIM's userName), {NICKNAME_MIN}-"
        f"{NICKNAME_MAX} characters: A-Z, a-z, 0-9, '.', '_', '+', '-', optionally followed by '@' and a domain "
        "(an email or UPN shape).",
        check_nickname,
        {
            "type": "string",
            "minLength": NICKNAME_MIN,
            "maxLength": NICKNAME_MAX,
            "pattern": f"^{NICKNAME_RE.pattern}$",
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
        "ISO 3166-1 alpha-2 country code, e.g. GB (lower case is accepted and upper-cased). Required on create; "
        "null only on a user provisioned over SCIM without one.",
        check_country,
        {"type": "string", "minLength": 2, "maxLength": 2},
    ),
    FieldSpec(
        "active",
        "Optional, default true. False deactivates the account: it stays readable but no password verifies "
        "for it until it is set true again.",
        check_active,
        {"type": "boolean"},
        optional=True,
        default=True,
    ),
    FieldSpec(
        "display_name",
        f"Optional: how the user is shown (SCIM displayName), 1-{NAME_MAX} characters after trimming; null clears it.",
        check_display_name,
        {"type": ["string", "null"], "minLength": 1, "maxLength": NAME_MAX},
        optional=True,
        nullable=True,
    ),
    FieldSpec(
        "external_id",
        f"Optional: an identity provider's key for the user (SCIM externalId), 1-{EXTERNAL_ID_MAX} characters, "
        "unique among live users, compared exactly; null clears it.",
        check_external_id,
        {"type": ["string", "null"], "minLength": 1, "maxLength": EXTERNAL_ID_MAX},
        optional=True,
        nullable=True,
    ),
    FieldSpec(
        "password",
        f"Write-only: {PASSWORD_MIN}-{PASSWORD_MAX} characters after NFKC normalisation; not a common password, "
        f"scoring at least {STRENGTH_MIN_SCORE} of 4 by the zxcvbn estimate, not containing the nickname or the "
        "email's local part. Stored as an argon2id hash, never returned.",
        check_password,
        {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX, "writeOnly": True},
        write_only=True,
    ),
)
FIELDS_BY_NAME: dict[str, FieldSpec] = {spec.name: spec for spec in WRITABLE_FIELDS}
READ_ONLY_FIELDS: tuple[str, ...] = ("id", "created_at", "updated_at", "version", "etag")


_NICKNAME_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]*")
PREFIX_FIELDS = ("email", "nickname", "last_name")
"""Fields searchable by prefix (each served by an index on its canonical column)."""


def check_prefix(field: str, value: object) -> str:
    """A search prefix in the canonical form of its field: NFC for email and last name (compared
    case-insensitively), the nickname profile for nicknames (compared exactly, like the nickname itself)."""
    longest = {"email": EMAIL_MAX, "nickname": NICKNAME_MAX, "last_name": NAME_MAX}[field]
    text = unicodedata.normalize("NFC", _text(value, longest)).strip()
    if field == "nickname" and text:
        try:
            text = _USERNAME.enforce(text)
        except UnicodeError:
            text = "\x00"  # refused by the character rule below
        if not _NICKNAME_PREFIX_RE.fullmatch(text):
            raise ValueError(NICKNAME_RULE)
    if not 1 <= len(text) <= longest:
        raise ValueError(f"must be 1 to {longest} characters")
    return text
