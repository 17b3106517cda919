"""Where SCIM's numbered pages start: the key of the user just before a page, remembered when the page before it was
served, so that the next page is a keyset seek instead of an OFFSET that reads every earlier row. Each anchor also
carries the total its walk began with, so a page that continues a walk does not count a million users again.

Per process and bounded: an identity provider pages one query from startIndex 1 to the end on one connection (so
one pod); a page whose anchor this process does not hold starts from the nearest one below it, or the beginning.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass

from userservice.domain.listing import Position


@dataclass(frozen=True)
class Anchor:
    index: int  # the 1-based index of the first user after `before`
    before: Position | None  # None: the beginning
    total: int | None  # what the walk that left this anchor counted (None: nothing yet)


START = Anchor(1, None, None)

QUERIES_MAX = 64
"""Queries whose anchors are kept (the least recently paged is forgotten first)."""
ANCHORS_PER_QUERY = 20_000
"""Anchors kept per query: 2,000,000 users at the count of 100 that identity providers page by."""


class PageAnchors:
    def __init__(self, queries: int = QUERIES_MAX, per_query: int = ANCHORS_PER_QUERY) -> None:
        self._queries: OrderedDict[str, tuple[list[int], dict[int, Anchor]]] = OrderedDict()
        self._max_queries, self._per_query = queries, per_query

    def nearest(self, query: str, start_index: int) -> Anchor:
        """The anchor with the largest index at or below `start_index`; START when there is none."""
        kept = self._queries.get(query)
        if kept is None:
            return START
        self._queries.move_to_end(query)
        indexes, anchors = kept
        at = bisect.bisect_right(indexes, start_index) - 1
        return anchors[indexes[at]] if at >= 0 else START

    def remember(self, query: str, anchor: Anchor) -> None:
        kept = self._queries.get(query)
        if kept is None:
            kept = self._queries[query] = ([], {})
            if len(self._queries) > self._max_queries:
                self._queries.popitem(last=False)
        self._queries.move_to_end(query)
        indexes, anchors = kept
        if anchor.index not in anchors:
            if len(indexes) >= self._per_query:
                del anchors[indexes.pop(0)]
            bisect.insort(indexes, anchor.index)
        anchors[anchor.index] = anchor
