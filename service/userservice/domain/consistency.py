"""Consistency tokens: what a client shows on a read so that it sees its own earlier write.

A token is the primary's WAL position once the write committed (a PostgreSQL LSN), opaque to clients: base64url
of a version byte and the LSN as 8 big-endian bytes. A replica that has replayed WAL up to that position holds the
write. The version byte leaves room to change the encoding without misreading old tokens.

The adapters open one `RequestConsistency` per request (`scope`); the read router reads the token the client sent
from it and the primary's pool notes there the position after each write, for the reply. A context variable
carries it, like the request id of the logs: it belongs to one request, not to any use case's arguments.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from userservice.domain.errors import invalid

_VERSION = 1
_LENGTH = 9  # version byte + LSN


def encode(lsn: int) -> str:
    raw = bytes([_VERSION]) + lsn.to_bytes(8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(token: str, field: str) -> int:
    """The LSN of a token this service issued; InvalidArgument (naming `field`) for anything else."""
    text = token.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) if text.isascii() else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _LENGTH or raw[0] != _VERSION:
        raise invalid(field, "is not a consistency token: send back the one a write's reply carried")
    return int.from_bytes(raw[1:], "big")


@dataclass
class RequestConsistency:
    """One request's view: the position its reads must see (from the client's token) and, when the request
    writes, the highest position its writes reached (for the reply's token)."""

    read_after: int | None
    records_writes: bool
    written: int | None = None

    def note_write(self, lsn: int) -> None:
        self.written = lsn if self.written is None else max(self.written, lsn)


_current: ContextVar[RequestConsistency | None] = ContextVar("consistency", default=None)


def current() -> RequestConsistency | None:
    return _current.get()


def read_position(token: str | None, field: str) -> int | None:
    """The position a read must see: None when the client sent no token (or an empty one)."""
    return decode(token, field) if token and token.strip() else None


@contextlib.contextmanager
def scope(read_after: int | None, *, records_writes: bool) -> Iterator[RequestConsistency]:
    """The consistency of the request running in this context."""
    state = RequestConsistency(read_after, records_writes)
    reset = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(reset)
