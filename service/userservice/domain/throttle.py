"""How repeated password failures lock a subject: pure arithmetic, the counting happens in store/throttle.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LockoutPolicy:
    """After `threshold` consecutive failures the subject is locked for `base_seconds`; each further failure
    (one is possible whenever a lock has run out) doubles the lock, up to `max_seconds`."""

    threshold: int
    base_seconds: float
    max_seconds: float

    def lock_seconds(self, failures: int) -> float | None:
        """How long `failures` consecutive failures lock the subject, or None when they do not."""
        if self.threshold <= 0 or failures < self.threshold:
            return None
        doublings = min(failures - self.threshold, 62)  # 2**62 seconds outlasts any cap
        return float(min(self.base_seconds * 2**doublings, self.max_seconds))
