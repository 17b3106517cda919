"""Structured logging: one JSON object per line, with the request id of the request being served."""

from __future__ import annotations

import contextvars
import logging
import sys
import uuid

from pythonjsonlogger.orjson import OrjsonFormatter

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
REQUEST_ID_MAX = 128


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
    return uuid.uuid4().hex


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        if rid:
            record.request_id = rid
        return True


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(
            OrjsonFormatter(  # orjson, as for every other JSON the service writes (jsoncodec)
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # No record needs the thread or process names; collecting them costs every access line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would duplicate ours (which carries the request id and duration).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
