"""The Python client's pure parts: backoff and retry decisions, the session's newest consistency token, status
details turned into exceptions, the token file read again only when it changes."""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from userservice_client import RetryPolicy, TokenFile, TokenFileError, errors
from userservice_client.client import _Session


def failure(code: grpc.StatusCode, *details: object, message: str = "no") -> errors.UserServiceError:
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return errors.from_status(code, message, [("grpc-status-details-bin", status.SerializeToString())])


def test_only_unavailable_and_resource_exhausted_are_retried_and_only_so_often() -> None:
    policy = RetryPolicy(attempts=3, initial=0.1, maximum=1.0, rng=random.Random(7))
    unavailable = errors.Unavailable(grpc.StatusCode.UNAVAILABLE, "down")
    assert policy.delay(0, unavailable) is not None and policy.delay(1, unavailable) is not None
    assert policy.delay(2, unavailable) is None  # the third attempt was the last
    assert policy.delay(0, errors.NotFound(grpc.StatusCode.NOT_FOUND, "gone")) is None
    assert policy.delay(0, errors.TooManyWatchers(grpc.StatusCode.RESOURCE_EXHAUSTED, "full")) is not None


def test_backoff_is_jittered_below_a_growing_cap_and_never_shorter_than_the_servers_hint() -> None:
    policy = RetryPolicy(initial=0.1, maximum=1.0, rng=random.Random(1))
    for retry, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (40, 1.0)]:
        waits = {policy.backoff(retry) for _ in range(50)}
        assert all(0 <= w <= cap for w in waits) and len(waits) > 40
    assert all(policy.backoff(0, hint=3.0) >= 3.0 for _ in range(20))
    locked = failure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        error_details_pb2.ErrorInfo(reason="LOCKED", domain="userservice.io"),
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=30, nanos=500_000_000)),
    )
    assert isinstance(locked, errors.Locked) and locked.retry_after == 30.5
    assert RetryPolicy(maximum=60).delay(0, locked) == pytest.approx(30.5, abs=0.1)


@pytest.mark.parametrize("bad", [{"attempts": 0}, {"initial": 2.0, "maximum": 1.0}])
def test_a_policy_that_cannot_work_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"attempts|backoff"):
        RetryPolicy(**bad)  # type: ignore[arg-type]


def token(lsn: int) -> str:
    return base64.urlsafe_b64encode(bytes([1]) + lsn.to_bytes(8, "big")).rstrip(b"=").decode()


def test_the_session_keeps_the_newest_token_whatever_order_replies_arrive_in() -> None:
    session = _Session()
    session.note(token(200))
    session.note(token(100))  # the reply to an earlier write, arriving late
    assert session.token == token(200)
    session.note(token(300))
    assert session.token == token(300)
    session.note("v2-format")  # an encoding this client does not know: the latest is taken
    assert session.token == "v2-format"


def test_each_reason_maps_to_its_exception_with_its_details() -> None:
    taken = failure(
        grpc.StatusCode.ALREADY_EXISTS,
        error_details_pb2.ErrorInfo(
            reason="ALREADY_EXISTS", domain="userservice.io", metadata={"field": "email"}
        ),
    )
    assert isinstance(taken, errors.AlreadyExists) and taken.field == "email"
    bad = failure(
        grpc.StatusCode.INVALID_ARGUMENT,
        error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field="email", description="bad")]
        ),
    )
    assert isinstance(bad, errors.InvalidArgument) and bad.violations == (
        errors.FieldViolation("email", "bad"),
    )
    denied = failure(
        grpc.StatusCode.PERMISSION_DENIED,
        error_details_pb2.ErrorInfo(
            reason="PERMISSION_DENIED", metadata={"verb": "delete", "resource": "users"}
        ),
    )
    assert isinstance(denied, errors.PermissionDenied) and (denied.verb, denied.resource) == (
        "delete",
        "users",
    )
    gap = failure(
        grpc.StatusCode.OUT_OF_RANGE,
        error_details_pb2.ErrorInfo(reason="CURSOR_EXPIRED", metadata={"oldest_cursor": "9-1"}),
    )
    assert isinstance(gap, errors.EventGap) and gap.oldest_cursor == "9-1"
    for reason, kind in errors.BY_REASON.items():
        assert isinstance(failure(grpc.StatusCode.UNKNOWN, error_details_pb2.ErrorInfo(reason=reason)), kind)
    # No details (a proxy's answer, a transport failure): the code decides.
    bare = errors.from_status(grpc.StatusCode.UNAVAILABLE, "connection reset", None)
    assert type(bare) is errors.Unavailable and bare.reason == ""


def test_the_token_file_is_read_again_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-secret\n")
    tokens = TokenFile(path)
    assert tokens.metadata() == ("authorization", "Bearer first-secret")
    rotated = tmp_path / "rotated"
    rotated.write_text("second-secret")
    os.replace(rotated, path)  # the kubelet's swap: a new inode
    assert tokens.token() == "second-secret"
    assert "secret" not in repr(tokens)
    path.write_text("")
    with pytest.raises(TokenFileError, match="is empty"):
        tokens.token()
    path.unlink()
    with pytest.raises(TokenFileError, match="cannot read"):
        tokens.token()
