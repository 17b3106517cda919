"""Change events as CloudEvents 1.0. The outbox stores them; watchers read them back in commit order."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from userservice.domain.errors import DomainError, invalid

CREATED = "io.userservice.user.created.v1"
UPDATED = "io.userservice.user.updated.v1"
DELETED = "io.userservice.user.deleted.v1"
# The password changed (changePassword, or an update that sets it); carries the user, never secret material.
PASSWORD_CHANGED = "io.userservice.user.password_changed.v1"  # noqa: S105 # an event type, not a secret
UNDELETED = "io.userservice.user.undeleted.v1"
PURGED = "io.userservice.user.purged.v1"
ERASED = "io.userservice.user.erased.v1"
EVENT_TYPES = (CREATED, UPDATED, DELETED, PASSWORD_CHANGED, UNDELETED, PURGED, ERASED)
# What an erased user's events hold instead of their data: id, type, subject, time and cursor stay.
TOMBSTONE: dict[str, Any] = {"erased": True}
_CURSOR = re.compile(r"([0-9]{1,20})-([0-9]{1,19})")
# The columns' ranges: the transaction id is an xid8 (unsigned 64 bits), the sequence number a bigint.
TX_MAX = 2**64 - 1
SEQ_MAX = 2**63 - 1


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in the event stream: the writing transaction's id, then the event's sequence number.

    Watchers read only events of transactions older than every transaction still running, so the stream
    is in commit order and a cursor never passes an event that commits later.
    """

    tx: int
    seq: int

    def __str__(self) -> str:
        return f"{self.tx}-{self.seq}"

    @classmethod
    def parse(cls, text: str, field: str) -> Cursor:
        match = _CURSOR.fullmatch(text)
        if match is None or int(match.group(1)) > TX_MAX or int(match.group(2)) > SEQ_MAX:
            raise invalid(field, "is not an event cursor issued by this service, nor now or earliest")
        return cls(int(match.group(1)), int(match.group(2)))


class StartAt(enum.Enum):
    """Where a watcher without a cursor starts; spelled as these words where a cursor is accepted."""

    NOW = "now"  # the current end of the stream: only changes committed from now on (the default)
    EARLIEST = "earliest"  # before the oldest retained event: everything still kept, then live changes


def parse_start(text: str, field: str) -> Cursor | StartAt:
    """A watcher's start position: a cursor issued by the stream, or `now` / `earliest`."""
    for start in StartAt:
        if text == start.value:
            return start
    return Cursor.parse(text, field)


class StreamRefused(DomainError):
    """The event stream cannot serve a watcher; `positions` name cursors the client can go on from."""

    def __init__(self, message: str, **positions: str) -> None:
        super().__init__(message)
        self.positions = positions


class CursorExpired(StreamRefused):
    """Events after the cursor were pruned: resuming from it would silently skip them."""


class TooManyWatchers(StreamRefused):
    """This process serves as many watchers as it may; another replica, or a later retry, can."""


class WatcherTooSlow(StreamRefused):
    """The watcher fell further behind the live feed than its buffer holds; it resumes from `cursor`."""


@dataclass(frozen=True)
class StoredEvent:
    cursor: Cursor
    id: UUID
    type: str
    subject: UUID
    time: datetime
    data: dict[str, Any]
    # CloudEvents authcontext extension: who made the change (absent for the service's own work).
    authtype: str | None = None
    authid: str | None = None

    def cloud_event(self, source: str) -> dict[str, Any]:
        event = {
            "specversion": "1.0",
            "id": str(self.id),
            "source": source,
            "type": self.type,
            "subject": str(self.subject),
            "time": self.time.isoformat(),
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if self.authtype is not None:
            event["authtype"] = self.authtype
        if self.authid:
            event["authid"] = self.authid
        return event


def event_data(user: dict[str, Any], changed_fields: tuple[str, ...] = ()) -> dict[str, Any]:
    data: dict[str, Any] = {"user": user}
    if changed_fields:
        data["changed_fields"] = list(changed_fields)
    return data
