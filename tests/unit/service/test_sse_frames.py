"""An event's SSE frame is encoded once for every watcher the live fan-out hands the same event to, and is
byte for byte the frame of the event itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from userservice.api.http import SseFrames
from userservice.domain.events import Cursor, StoredEvent


def _event(tx: int, nickname: str) -> StoredEvent:
    return StoredEvent(
        Cursor(tx, 0),
        uuid.uuid4(),
        "user.updated",
        uuid.uuid4(),
        datetime.now(UTC),
        {"user": {"nickname": nickname}},
    )


def _parse(frame: bytes) -> tuple[str, str, dict[str, object]]:
    lines = frame.decode().split("\n")
    assert lines[3:] == ["", ""]
    return lines[0], lines[1], orjson.loads(lines[2].removeprefix("data: "))


def test_one_event_object_is_encoded_once_and_as_itself() -> None:
    frames = SseFrames()
    event = _event(7, "ada")
    first = frames.frame(event, "urn:test")
    assert (
        frames.frame(event, "urn:test") is first
    )  # the second watcher gets the same bytes, not a new encoding
    assert _parse(first) == (f"id: {event.cursor}", "event: user.updated", event.cloud_event("urn:test"))


def test_another_object_of_the_same_cursor_is_encoded_from_its_own_content() -> None:
    frames = SseFrames()
    before, after = _event(7, "ada"), _event(7, "erased")
    frames.frame(before, "urn:test")
    assert _parse(frames.frame(after, "urn:test"))[2]["data"] == {"user": {"nickname": "erased"}}


def test_the_cache_keeps_only_the_newest_frames() -> None:
    frames = SseFrames(size=3)
    events = [_event(tx, f"u{tx}") for tx in range(10)]
    encoded = [frames.frame(event, "urn:test") for event in events]
    assert frames.frame(events[-1], "urn:test") is encoded[-1]  # still cached
    again = frames.frame(events[0], "urn:test")
    assert again == encoded[0] and again is not encoded[0]  # evicted long ago: encoded anew, the same bytes
