"""Filters, the AIP-160 subset and page tokens (pure)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from userservice.domain.errors import InvalidArgument, excerpt
from userservice.domain.events import Cursor
from userservice.domain.listing import (
    DEFAULT_PAGE_SIZE,
    FILTER_MAX,
    ListFilter,
    PageTokens,
    Position,
    filter_from_query,
    parse_filter,
    parse_order_by,
    resolve_page_size,
)

T = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)


def test_query_filters() -> None:
    assert filter_from_query({"country": "gb", "created_after": "2024-01-31T12:00:00Z"}) == ListFilter(
        country="GB", created_after=T
    )
    with pytest.raises(InvalidArgument) as info:
        filter_from_query({"country": "XX", "created_before": "2024-01-31T12:00:00"})
    assert {v.field for v in info.value.violations} == {"country", "created_before"}


def test_aip160_subset_matches_query_semantics() -> None:
    expr = 'country = "gb" AND nickname = "ada" AND created_at >= "2024-01-31T12:00:00Z" AND created_at < "2024-02-01T00:00:00+00:00"'
    parsed = parse_filter(expr)
    assert parsed.country == "GB" and parsed.nickname == "ada"
    assert parsed.created_after == T - timedelta(microseconds=1)
    assert parsed.created_before == datetime(2024, 2, 1, tzinfo=UTC)
    assert parse_filter('created_at <= "2024-01-31T12:00:00Z"').created_before == T + timedelta(
        microseconds=1
    )
    assert parse_filter("  ") == ListFilter()


@pytest.mark.parametrize(
    "expr",
    [
        "country = GB",
        'country != "GB"',
        'age = "3"',
        'created_at = "2024-01-01T00:00:00Z"',
        'country = "GB" OR country = "FR"',
        'created_at > "yesterday"',
        'email > "a@b.co"',
    ],
)
def test_aip160_rejects(expr: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter(expr)
    assert info.value.violations[0].field == "filter"


def test_page_size() -> None:
    assert resolve_page_size(None) == DEFAULT_PAGE_SIZE
    assert resolve_page_size(1000) == 1000
    for bad in (0, -1, 1001):
        with pytest.raises(InvalidArgument):
            resolve_page_size(bad)


positions = st.builds(
    Position,
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.uuids(),
)
filters = st.builds(
    ListFilter,
    country=st.sampled_from([None, "GB", "FR"]),
    nickname=st.one_of(st.none(), st.text(max_size=5)),
)


@given(positions, filters)
def test_tokens_round_trip(position: Position, list_filter: ListFilter) -> None:
    tokens = PageTokens(b"k" * 32)
    assert tokens.decode(tokens.encode(position, list_filter), list_filter) == position


@given(positions, st.integers(min_value=0), st.binary(min_size=1, max_size=3))
def test_any_edit_to_a_token_is_refused(position: Position, at: int, junk: bytes) -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode(position, ListFilter())
    i = at % len(token)
    edited = token[:i] + junk.hex() + token[i + 1 :]
    if edited == token:
        return
    with pytest.raises(InvalidArgument):
        tokens.decode(edited, ListFilter())


def test_token_from_another_secret_or_filter_is_refused() -> None:
    position = Position(T, uuid.uuid4())
    token = PageTokens(b"a" * 32).encode(position, ListFilter(country="GB"))
    with pytest.raises(InvalidArgument, match="page_token"):
        PageTokens(b"b" * 32).decode(token, ListFilter(country="GB"))
    with pytest.raises(InvalidArgument) as info:
        PageTokens(b"a" * 32).decode(token, ListFilter(country="FR"))
    assert "different filters" in info.value.violations[0].description


@given(st.text(max_size=40))
def test_garbage_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument):
        PageTokens(b"k" * 32).decode(token, ListFilter())


@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=0, max_value=2**63 - 1))
def test_cursor_round_trip(tx: int, seq: int) -> None:
    assert Cursor.parse(str(Cursor(tx, seq)), "c") == Cursor(tx, seq)


@pytest.mark.parametrize(
    "text", ["", "1", "a-b", "1-", "-1", "1-2-3", "\uff11-2", f"{2**64}-1", f"1-{2**63}", "1-" + "9" * 20]
)
def test_bad_cursors(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Cursor.parse(text, "after_cursor")


def test_filter_length_is_capped_and_not_echoed() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter('country = "GB"' + " " * 40_000 + "x")
    description = info.value.violations[0].description
    assert f"at most {FILTER_MAX} characters" in description and len(description) < 100


def test_filter_errors_quote_a_bounded_excerpt() -> None:
    expr = 'country = "GB"' + " " * 500 + "x" * (FILTER_MAX - 600)
    with pytest.raises(InvalidArgument) as info:
        parse_filter(expr)
    assert len(info.value.violations[0].description) <= 200


@pytest.mark.parametrize(
    "expr",
    [
        'country = "GB" AND',
        'country = "GB" nickname = "ada"',
        'country = "GB',
        '= "GB"',
        'country "GB"',
        'nickname = "ada" AND AND country = "GB"',
    ],
)
def test_filter_syntax_errors(expr: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter(expr)
    assert info.value.violations[0].field == "filter"


def test_filter_quoted_values_keep_escapes_and_spaces() -> None:
    assert parse_filter('nickname="ada"AND country="gb"') == ListFilter(country="GB", nickname="ada")
    with pytest.raises(InvalidArgument) as info:
        parse_filter('nickname = "a\\"b c"')
    assert info.value.violations[0].description.startswith("nickname may hold only")


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00Z",
    ],
)
def test_timestamps_at_the_ends_of_the_calendar_are_invalid_argument(value: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_filter(f'created_at >= "{value}"')
    with pytest.raises(InvalidArgument):
        parse_filter(f'created_at <= "{value}"')
    with pytest.raises(InvalidArgument):
        filter_from_query({"created_after": value})


def test_timestamps_are_compared_in_utc() -> None:
    assert parse_filter('created_at > "2024-01-31T13:00:00+01:00"').created_after == T
    assert filter_from_query({"created_before": "2024-01-31T07:00:00-05:00"}).created_before == T


@given(st.text(max_size=FILTER_MAX + 10))
def test_any_filter_parses_or_is_invalid_argument(expr: str) -> None:
    try:
        parse_filter(expr)
    except InvalidArgument as exc:
        assert all(len(v.description) <= 200 for v in exc.violations)


def test_overlong_page_tokens_are_refused_unread() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode(Position(T, uuid.uuid4()), ListFilter())
    with pytest.raises(InvalidArgument):
        tokens.decode(token + "A" * PageTokens.MAX_LENGTH, ListFilter())


def test_excerpts_of_escaped_text_stay_short() -> None:
    assert len(excerpt("\U0010ffff" * 100)) < 70
    assert excerpt("GB") == "'GB'"


def test_prefixes_and_order_read_alike_from_rest_and_the_aip160_filter() -> None:
    rest = filter_from_query(
        {
            "email_prefix": "Ada",
            "nickname_prefix": "\uff41da",
            "last_name_prefix": "Lo\u0301",
            "order_by": "created_at  desc",
        }
    )
    grpc_side = parse_filter('email = "Ada*" AND nickname = "\uff41da*" AND last_name = "Lo\u0301*"')
    assert rest == ListFilter(
        email_prefix="Ada", nickname_prefix="ada", last_name_prefix="L\u00f3", descending=True
    )  # NFC, and the nickname profile maps fullwidth letters
    assert replace(grpc_side, descending=True) == rest
    assert parse_order_by("created_at") is parse_order_by(" created_at asc ") is False
    with pytest.raises(InvalidArgument):
        parse_order_by("created_at desc, id")


def test_page_tokens_are_bound_to_the_order_and_the_prefixes() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode(Position(T, uuid.uuid4()), ListFilter(email_prefix="a"))
    for other in (ListFilter(email_prefix="a", descending=True), ListFilter(email_prefix="ab"), ListFilter()):
        with pytest.raises(InvalidArgument):
            tokens.decode(token, other)
