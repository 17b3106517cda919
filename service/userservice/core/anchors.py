"""Where SCIM's numbered pages start: the key of the user just before a page, remembered when the page before it was
served, so that the next page is a keyset seek instead of an OFFSET that reads every earlier row.

Per process and bounded: an identity provider pages one query from startIndex 1 to the end on one connection (so
one pod); a page whose anchor this process does not hold starts from the nearest one below it, or the beginning.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

from userservice.domain.listing import Position

QUERIES_MAX = 64
"""Queries whose anchors are kept (the least recently paged is forgotten first)."""
ANCHORS_PER_QUERY = 20_000
"""Anchors kept per query: 2,000,000 users at the count of 100 that identity providers page by."""


class PageAnchors:
    def __init__(self, queries: int = QUERIES_MAX, per_query: int = ANCHORS_PER_QUERY) -> None:
        self._queries: OrderedDict[str, tuple[list[int], dict[int, Position]]] = OrderedDict()
        self._max_queries, self._per_query = queries, per_query

    def nearest(self, query: str, start_index: int) -> tuple[int, Position | None]:
        """The largest remembered index at or below `start_index` and the key of the user before it; (1, None)
        (the beginning) when there is none."""
        kept = self._queries.get(query)
        if kept is None:
            return 1, None
        self._queries.move_to_end(query)
        indexes, positions = kept
        at = bisect.bisect_right(indexes, start_index) - 1
        return (indexes[at], positions[indexes[at]]) if at >= 0 else (1, None)

    def remember(self, query: str, start_index: int, before: Position) -> None:
        """The user at `start_index - 1` has the key `before`."""
        kept = self._queries.get(query)
        if kept is None:
            kept = self._queries[query] = ([], {})
            if len(self._queries) > self._max_queries:
                self._queries.popitem(last=False)
        self._queries.move_to_end(query)
        indexes, positions = kept
        if start_index not in positions:
            if len(indexes) >= self._per_query:
                del positions[indexes.pop(0)]
            bisect.insort(indexes, start_index)
        positions[start_index] = before
