"""Helpers of the client tests: users as the client's messages, and waiting for the client to retry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from tests.support.users import new_user
from userservice_client import messages


def user(**overrides: object) -> messages.User:
    return messages.User(**new_user(**overrides))  # type: ignore[arg-type]


class Retries(logging.Handler):
    """Counts the client's retry and reconnect log records; `seen` is set at the first one."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen = asyncio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("retrying", "event stream:")):
            self.messages.append(message)
            self.seen.set()


@contextlib.contextmanager
def watching_retries() -> Iterator[Retries]:
    logger = logging.getLogger("userservice_client")
    handler, level = Retries(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
