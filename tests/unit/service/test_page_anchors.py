"""Page anchors: the nearest remembered start at or below a page, bounded per query and in queries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from userservice.core.anchors import START, Anchor, PageAnchors
from userservice.domain.listing import Position


def at(n: int) -> Position:
    return Position(datetime(2024, 1, 1, tzinfo=UTC), uuid.UUID(int=n))


def test_a_page_starts_from_the_nearest_anchor_at_or_below_it() -> None:
    anchors = PageAnchors()
    assert anchors.nearest("q", 101) == START
    anchors.remember("q", Anchor(101, at(100), 1000))
    anchors.remember("q", Anchor(201, at(200), 1000))
    assert anchors.nearest("q", 201) == Anchor(201, at(200), 1000)
    assert anchors.nearest("q", 250).index == 201
    assert anchors.nearest("q", 150).index == 101
    assert anchors.nearest("q", 100) == START
    assert anchors.nearest("other", 201) == START


def test_anchors_are_bounded_per_query_and_in_queries() -> None:
    anchors = PageAnchors(queries=2, per_query=3)
    for i in range(1, 6):
        anchors.remember("q", Anchor(i * 100 + 1, at(i), 9))
    assert anchors.nearest("q", 201) == START  # the oldest were dropped: 101 and 201
    assert anchors.nearest("q", 301).index == 301
    anchors.remember("r", Anchor(11, at(10), 9))
    anchors.nearest("q", 301)  # q is used again: r is now the least recently used
    anchors.remember("s", Anchor(11, at(10), 9))
    assert anchors.nearest("r", 11) == START
    assert anchors.nearest("q", 501).index == 501 and anchors.nearest("s", 11).index == 11
