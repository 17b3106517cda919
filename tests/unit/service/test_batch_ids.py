"""A batch's user ids, drawn at once, are random version 4 UUIDs like uuid.uuid4()'s, never repeated."""

from __future__ import annotations

import uuid

from userservice.core.batch import random_ids


def test_batch_ids_are_distinct_version_4_uuids() -> None:
    ids = random_ids(1000) + random_ids(1000)
    assert len(set(ids)) == 2000
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert random_ids(0) == []
