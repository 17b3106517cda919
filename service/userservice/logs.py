"""Structured logging: one JSON object per line, with the request id of the request being served."""

from __future__ import annotations

import contextvars
import itertools
import logging
import random
import sys
import uuid
from dataclasses import dataclass

import orjson

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
REQUEST_ID_MAX = 128
# A fresh request id is this process's random half and a counter: 32 hex digits like a UUID's, unique across
# processes, without a random draw (a system call) per request.
_ID_PREFIX = uuid.uuid4().hex[:16]
_ids = itertools.count(1)


def accepted_request_id(offered: object) -> str:
    """The caller's request id when it is a short printable ASCII string (it goes into every log line of the
    request), else a fresh one."""
    if (
        isinstance(offered, str)
        and 0 < len(offered) <= REQUEST_ID_MAX
        and offered.isascii()
        and offered.isprintable()
    ):
        return offered
    return f"{_ID_PREFIX}{next(_ids) & 0xFFFFFFFFFFFFFFFF:016x}"


@dataclass(frozen=True)
class AccessSampling:
    """Which requests get an access line: every error, every slow request and every write; of the fast,
    successful reads, a `sample` share (1: all of them). A line costs the event loop more than a cached read
    itself does, and the metrics count every request whether it is logged or not."""

    sample: float = 1.0
    slow_seconds: float = 0.0

    def keeps(self, method: str, status: int, seconds: float) -> bool:
        if status >= 400 or seconds >= self.slow_seconds or method not in ("GET", "HEAD"):
            return True
        return self.sample >= 1 or random.random() < self.sample  # noqa: S311 (sampling, not secrets)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        if rid:
            record.request_id = rid
        return True


# The attributes every LogRecord has: anything else on a record came from `extra=` and goes into the line.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, name, message, then the record's `extra` fields (the request
    id among them), then the traceback as exc_info. Written for the access log, which formats a line per
    request: no format string to parse, one pass over the record, orjson as for every other JSON the service
    writes (jsoncodec)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "name": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # No record needs the thread or process names; collecting them costs every access line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would duplicate ours (which carries the request id and duration).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
