"""Request ids: a caller's short printable one is kept; otherwise every request gets a fresh one, never reused."""

from __future__ import annotations

import re

from userservice.logs import accepted_request_id


def test_fresh_request_ids_are_32_hex_digits_and_never_repeat() -> None:
    fresh = [accepted_request_id(None) for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in fresh)
    assert len(set(fresh)) == len(fresh)


def test_a_callers_request_id_is_kept_only_when_short_and_printable_ascii() -> None:
    assert accepted_request_id("trace-me-1") == "trace-me-1"
    for refused in ("", "x" * 129, "caf\u00e9", "line\nbreak", 42):
        assert accepted_request_id(refused) != refused
