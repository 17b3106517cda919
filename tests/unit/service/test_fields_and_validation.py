"""Validation rules (pure): every limit, with property-based checks that valid input round-trips."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from userservice.domain import fields
from userservice.domain.errors import InvalidArgument
from userservice.domain.model import Changes, etag_for, etag_versions, parse_etag
from userservice.domain.password_policy import COMMON_PASSWORDS
from userservice.domain.validation import validate_changes, validate_new_user

VALID = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "nickname": "ada_l",
    "email": "ada@example.com",
    "country": "GB",
    "password": "correct horse battery",
}


def violations(body: dict[str, object]) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as info:
        validate_new_user(body)
    return {v.field: v.description for v in info.value.violations}


def test_valid_user_is_normalised() -> None:
    new = validate_new_user({**VALID, "first_name": " Ada ", "country": "gb", "email": " ada@example.com "})
    assert (new.first_name, new.country, new.email) == ("Ada", "GB", "ada@example.com")
    assert "correct horse" not in repr(new)  # the password never appears in a repr (and so in a log)


def test_all_problems_are_reported_together() -> None:
    found = violations(
        {
            "first_name": "",
            "nickname": "x",
            "email": "no",
            "country": "ZZ",
            "password": "short",
            "id": "1",
            "x": 1,
        }
    )
    assert set(found) == {"first_name", "last_name", "nickname", "email", "country", "password", "id", "x"}
    assert found["last_name"] == "is required"
    assert found["id"] == "is read-only and cannot be set"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("first_name", "A" * 101, "at most 100"),
        ("first_name", "1234", "at least one letter"),
        ("first_name", "Ad\u200ba", "control, format"),
        ("nickname", "ab", "3 to 128"),
        ("nickname", "a" * 129, "3 to 128"),
        ("nickname", "_ada", "start with a letter or digit"),
        ("nickname", "ädä", "letters A-Z"),
        ("email", "a@" + "b" * 250 + ".com", "at most 254"),
        ("email", "x" * 65 + "@example.com", "local part at most 64"),
        ("email", "a b@example.com", "email address"),
        ("email", "ada@-example.com", "email address"),
        ("country", "UK", "did you mean GB"),
        ("country", "GBR", "ISO 3166-1 alpha-2"),
        ("password", "x" * 11, "12 to 128"),
        ("password", "x" * 129, "12 to 128"),
        ("password", "pass\x00word-long", "control"),
        ("password", "pass\ud800word-long", "surrogate"),
        ("password", 123456789012, "must be a string"),
    ],
)
def test_limits(field: str, value: object, message: str) -> None:
    assert message in violations({**VALID, field: value})[field]


def test_unicode_names_are_welcome() -> None:
    for name in ("Zoë", "José María", "O'Brien-Smith", "李", "Nguyễn"):
        assert validate_new_user({**VALID, "first_name": name}).first_name == name


def test_changes_refuse_null_and_track_real_changes() -> None:
    with pytest.raises(InvalidArgument):
        validate_changes({"email": None})
    changes = validate_changes({"country": "fr", "password": "another good password"})
    assert isinstance(changes, Changes) and changes.fields == ("country", "password")
    assert "another good" not in repr(changes)


def test_etags() -> None:
    assert etag_for(3) == '"v3"'
    assert parse_etag('"v3"') == parse_etag('W/"v3"') == 3
    for junk in ("v3", '"3"', '"vx"', "", '"v"'):
        assert parse_etag(junk) is None


nicknames = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{2,31}\Z")
emails = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"\A[A-Za-z0-9+_-]{1,20}(?:\.[A-Za-z0-9+_-]{1,20}){0,2}\Z"),
    st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?\Z"),
    st.sampled_from(["com", "org", "io", "co"]),
)
names = st.text(min_size=1, max_size=100).filter(lambda s: s.strip() and any(c.isalpha() for c in s))
passwords = st.text(
    st.characters(exclude_categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"]), min_size=12, max_size=128
).filter(str.strip)


@given(
    nickname=nicknames,
    email=emails,
    country=st.sampled_from(sorted(fields.ISO_3166_ALPHA2)),
    password=passwords,
)
def test_valid_input_is_accepted_and_stable(nickname: str, email: str, country: str, password: str) -> None:
    normalised = unicodedata.normalize("NFKC", password)  # passwords are kept as NFKC
    folded = normalised.casefold()
    assume(12 <= len(normalised) <= 128 and normalised.strip() and folded not in COMMON_PASSWORDS)
    assume(nickname.casefold() not in folded and email.split("@")[0].casefold() not in folded)
    new = validate_new_user(
        {**VALID, "nickname": nickname, "email": email, "country": country.lower(), "password": password}
    )
    assert (new.nickname, new.email, new.country, new.password) == (nickname, email, country, normalised)
    # Normalisation is idempotent: validating the output again changes nothing.
    assert validate_new_user({**new.profile(), "password": new.password}) == new


@given(
    st.dictionaries(
        st.text(max_size=12), st.one_of(st.none(), st.integers(), st.text(max_size=300)), max_size=8
    )
)
def test_arbitrary_input_either_validates_or_raises_invalid_argument(body: dict[str, object]) -> None:
    try:
        validate_new_user(body)
        validate_changes(body)
    except InvalidArgument as exc:
        assert exc.violations and all(v.description for v in exc.violations)
        assert {v.field for v in exc.violations} <= set(body) | set(fields.FIELDS_BY_NAME)


@given(names)
def test_names_within_limits_are_kept(name: str) -> None:
    try:
        result = fields.check_name(name)
    except ValueError as exc:
        assert "control" in str(exc) or "at most" in str(exc)
    else:
        assert 1 <= len(result) <= fields.NAME_MAX and result == result.strip()


@pytest.mark.parametrize(
    ("field", "value", "canonical"),
    [
        ("email", "e\u0301mile@example.com", "\u00e9mile@example.com"),  # NFD -> NFC
        ("email", "\u212aate@example.com", "Kate@example.com"),  # Kelvin sign -> K
        ("email", "Ada@EXAMPLE.com", "Ada@example.com"),
        ("nickname", "\uff41da", "ada"),  # fullwidth -> ASCII (PRECIS width mapping)
        ("nickname", "\u212aate", "Kate"),
        ("first_name", "Zoe\u0308", "Zo\u00eb"),
    ],
)
def test_identity_strings_are_canonical(field: str, value: str, canonical: str) -> None:
    assert fields.FIELDS_BY_NAME[field].check(value) == canonical


@pytest.mark.parametrize("field", ["first_name", "last_name", "nickname", "email", "password"])
@pytest.mark.parametrize(
    "char", ["\u200b", "\u202e", "\u2066", "\u2028", "\u2029", "\ufeff", "\x1b", "\ud800"]
)
def test_invisible_and_control_characters_are_refused_everywhere(field: str, char: str) -> None:
    value = {"email": f"ad{char}a@example.com", "password": f"long password{char}"}.get(field, f"Ad{char}a")
    assert field in violations({**VALID, field: value})


@pytest.mark.parametrize("country", ["\u0131t", "\u017fe", "\uff27\uff22", "G\u0042\u0308"])
def test_country_codes_are_ascii_only(country: str) -> None:
    assert "country" in violations({**VALID, "country": country})


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        ("*", None),
        ('"v3"', {3}),
        ('W/"v3", "v4" ,, "x"', {3, 4}),
        ('"a,b", "v5"', {5}),
        ('"v99999999999999999999"', set()),
    ],
)
def test_etag_lists(header: str, versions: set[int] | None) -> None:
    found = etag_versions(header, "If-Match")
    assert (None if found is None else set(found)) == versions


@pytest.mark.parametrize("header", ["v1", '"v1', '*, "v1"', "W/v1", '"v1" "v2"', '"v\x011"', ",", " "])
def test_malformed_etag_lists_are_invalid(header: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        etag_versions(header, "If-Match")
    assert info.value.violations[0].field == "If-Match"


@given(st.text(max_size=200))
def test_any_etag_list_parses_or_is_invalid(header: str) -> None:
    try:
        etag_versions(header, "etag")
    except InvalidArgument as exc:
        assert exc.violations[0].field == "etag"


def _outcome(check: object, value: object) -> tuple[str, str]:
    """What a checker answers: its value, or its refusal's message."""
    try:
        return ("ok", check(value))  # type: ignore[operator]
    except ValueError as exc:
        return ("refused", str(exc))


_LABEL = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
# Mostly the fast path's shape, with its edges: special-use and numeric top-level domains, "--" labels, dots and
# lengths at the limits, a non-ASCII character or a space anywhere.
_EMAILS = st.one_of(
    st.builds(
        lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
        st.from_regex(r"[A-Za-z0-9_+.-]{1,70}", fullmatch=True),
        st.lists(
            st.one_of(_LABEL, st.sampled_from(["ab--cd", "xn--bcher-kva", "A--B"])), min_size=1, max_size=4
        ),
        st.one_of(
            st.from_regex(r"[A-Za-z]{1,64}", fullmatch=True),
            st.sampled_from(
                ["test", "TEST", "localhost", "onion", "arpa", "invalid", "local", "123", "xn--p1ai"]
            ),
        ),
    ),
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=70),
        st.text(min_size=1, max_size=70),
    ),
    st.text(max_size=300),
    st.builds(lambda n: "a" * n + "@example.com", st.integers(60, 250)),
)


@given(_EMAILS)
def test_the_ascii_email_fast_path_answers_as_email_validator_does(email: str) -> None:
    assert _outcome(fields.check_email, email) == _outcome(fields.check_email_full, email)


@given(
    st.one_of(
        st.from_regex(r"[A-Za-z0-9._+@-]{0,40}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9._+-]{1,60}@[A-Za-z0-9.-]{1,80}", fullmatch=True),
        st.text(max_size=40),
        st.text(alphabet=st.characters(max_codepoint=0xFFFF), max_size=40),
    )
)
def test_the_ascii_nickname_fast_path_answers_as_the_precis_profile_does(nickname: str) -> None:
    assert _outcome(fields.check_nickname, nickname) == _outcome(fields.check_nickname_full, nickname)


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_printable_ascii_is_exactly_the_ascii_no_text_field_forbids(text: str) -> None:
    allowed = all(unicodedata.category(ch) not in fields._FORBIDDEN for ch in text)
    assert text.isprintable() == allowed


@pytest.mark.parametrize("value", [None, 42, ["a@example.com"], b"a@example.com"])
def test_non_strings_are_refused_by_both_paths(value: object) -> None:
    for check in (fields.check_email, fields.check_nickname):
        assert _outcome(check, value) == ("refused", "must be a string")
