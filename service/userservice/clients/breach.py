"""Refuses passwords that appear in known data breaches, asking a k-anonymity range service (the protocol of
Pwned Passwords' range API): only the first 5 hex characters of the password's SHA-1 leave the service, and
the answer lists every known hash suffix under that prefix, `SUFFIX:COUNT` per line, which is compared here.
"""

from __future__ import annotations

import hashlib
import logging

import aiohttp

from userservice.domain.errors import DependencyUnavailable, invalid
from userservice.metrics import Metrics

log = logging.getLogger(__name__)

PREFIX_LENGTH = 5


class BreachCheck:
    def __init__(self, url: str, timeout: float, fail_open: bool, metrics: Metrics) -> None:
        self._url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._fail_open = fail_open
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    async def _suffixes(self, prefix: str) -> set[str]:
        if self._session is None:  # made on first use: a session belongs to the running loop
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        # Add-Padding: the answer's size does not tell which prefix was asked for.
        async with self._session.get(f"{self._url}/{prefix}", headers={"Add-Padding": "true"}) as resp:
            resp.raise_for_status()
            text = await resp.text()
        found = set()
        for line in text.splitlines():
            suffix, _, count = line.strip().partition(":")
            if count.strip() not in {"", "0"}:  # padding lines have a count of 0
                found.add(suffix.upper())
        return found

    async def check(self, password: str, field: str) -> None:
        """InvalidArgument on `field` when the password is in a known breach. When the range service cannot
        answer in time, the password passes (fail open) or the request fails as unavailable (fail closed)."""
        if not self._url:  # BREACH_CHECK_URL unset: no check
            return
        digest = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()
        try:
            breached = digest[PREFIX_LENGTH:] in await self._suffixes(digest[:PREFIX_LENGTH])
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            self._metrics.breach_checks.labels("error").inc()
            log.warning(
                "breach check failed", extra={"error": type(exc).__name__, "fail_open": self._fail_open}
            )
            if self._fail_open:
                return
            raise DependencyUnavailable("the password breach check cannot be reached; retry later") from None
        self._metrics.breach_checks.labels("breached" if breached else "clean").inc()
        if breached:
            raise invalid(field, "appears in a known data breach; choose another")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
