from __future__ import annotations

from userservice.domain.throttle import LockoutPolicy


def test_locks_at_the_threshold_and_doubles_up_to_the_cap() -> None:
    policy = LockoutPolicy(threshold=3, base_seconds=30, max_seconds=200)
    assert [policy.lock_seconds(n) for n in range(1, 8)] == [None, None, 30, 60, 120, 200, 200]
    assert policy.lock_seconds(10**6) == 200  # no overflow however long the attack


def test_a_threshold_of_zero_never_locks() -> None:
    assert LockoutPolicy(0, 30, 3600).lock_seconds(10**3) is None
