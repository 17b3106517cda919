"""When to try a call again, and after how long: capped exponential backoff with full jitter, never sooner than
the server's own hint (google.rpc.RetryInfo), within the call's deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import grpc

from userservice_client.errors import UserServiceError

RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` counts the first try (1 turns retries off). The n-th retry waits a uniformly random time up to
    min(`maximum`, `initial` * `multiplier`**n) (full jitter, so many clients that failed together do not return
    together), or the server's retry hint when that is longer."""

    attempts: int = 5
    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts counts the first try: at least 1")
        if not 0 <= self.initial <= self.maximum:
            raise ValueError("backoff needs 0 <= initial <= maximum")

    def delay(self, retry: int, error: UserServiceError) -> float | None:
        """Seconds to wait before retry number `retry` (0 for the first) of a call after `error`; None: do not
        retry (an error no retry can mend, or the attempts are spent)."""
        if error.code not in RETRIED_CODES or retry + 1 >= self.attempts:
            return None
        return self.backoff(retry, error.retry_after)

    def backoff(self, retry: int, hint: float | None = None) -> float:
        """The jittered wait before retry number `retry`, at least `hint` (the server's RetryInfo) when given."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** min(retry, 64))
        wait = self.rng.uniform(0, ceiling)
        return wait if hint is None else max(wait, hint)


NO_RETRIES = RetryPolicy(attempts=1)
