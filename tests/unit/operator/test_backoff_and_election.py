"""The worker's backoff and the leader election's decisions, as pure functions (the processes are tested in
tests/integration/operator/test_operator_process.py)."""

from __future__ import annotations

from userservice_operator.leader import Observed, decide
from userservice_operator.runtime import backoff


def test_backoff_doubles_from_the_base_up_to_the_limit() -> None:
    assert [backoff(n, 1.0, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff(3, 0.5, 60.0) == 2.0
    assert backoff(0, 1.0, 60.0) == 0.0
    assert backoff(200, 1.0, 5.0) == 5.0  # no overflow for long outages


LEASE = {"holderIdentity": "other", "renewTime": "t1", "leaseTransitions": 4, "leaseDurationSeconds": 15}


def test_a_held_lease_is_left_alone_until_unchanged_for_its_duration() -> None:
    first = decide(LEASE, "me", None, now=100.0, default_duration=30)
    assert not first.take and first.observed == Observed(("other", "t1", 4), 100.0)
    waiting = decide(LEASE, "me", first.observed, now=114.9, default_duration=30)
    assert not waiting.take
    expired = decide(LEASE, "me", first.observed, now=115.0, default_duration=30)
    assert expired.take and expired.transitions == 5 and expired.taking_over_from == "other"


def test_a_renewal_restarts_the_expiry_clock() -> None:
    first = decide(LEASE, "me", None, now=100.0, default_duration=30)
    renewed = {**LEASE, "renewTime": "t2"}
    later = decide(renewed, "me", first.observed, now=120.0, default_duration=30)
    assert not later.take and later.observed.at == 120.0


def test_own_lease_is_renewed_and_a_free_one_taken() -> None:
    own = decide({**LEASE, "holderIdentity": "me"}, "me", None, now=0.0, default_duration=15)
    assert own.take and own.transitions == 4 and not own.taking_over_from
    free = decide({**LEASE, "holderIdentity": ""}, "me", None, now=0.0, default_duration=15)
    assert free.take and free.transitions == 5


def test_missing_duration_uses_the_configured_one() -> None:
    lease = {k: v for k, v in LEASE.items() if k != "leaseDurationSeconds"}
    first = decide(lease, "me", None, now=0.0, default_duration=10)
    assert not decide(lease, "me", first.observed, now=9.0, default_duration=10).take
    assert decide(lease, "me", first.observed, now=10.0, default_duration=10).take
