"""A user's JSON and protobuf forms (pure): the fast paths write exactly what the standard ones would."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID
from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from userservice import jsoncodec
from userservice.api.grpc import to_proto
from userservice.domain.model import User

aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]),
)


def user(created_at: datetime, updated_at: datetime | None = None) -> User:
    return User(
        uuid.uuid4(),
        "Ada",
        "Lovelace",
        "ada",
        "ada@example.com",
        "GB",
        created_at,
        updated_at or created_at,
        3,
    )


@given(aware_datetimes)
def test_datetimes_are_written_as_isoformat_writes_them(value: datetime) -> None:
    assert jsoncodec.dumps(value) == json.dumps(value.isoformat()).encode()


def test_uuids_are_written_as_strings_including_asyncpgs_own_uuid_type() -> None:
    plain = uuid.uuid4()
    assert jsoncodec.dumps([plain, AsyncpgUUID(str(plain))]) == f'["{plain}","{plain}"]'.encode()


def test_a_value_json_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsoncodec.dumps({"x": Decimal(1)})


@given(aware_datetimes, aware_datetimes)
def test_public_json_round_trips_through_from_public(created: datetime, updated: datetime) -> None:
    original = user(created, updated)
    assert User.from_public(json.loads(jsoncodec.dumps(original.public()))) == original


@given(aware_datetimes)
def test_proto_timestamps_match_from_datetime(value: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    message = to_proto(user(value))
    assert message.created_at == expected and message.updated_at == expected


def test_proto_timestamps_before_the_epoch_are_normalised() -> None:
    message = to_proto(user(datetime(1969, 12, 31, 23, 59, 59, 250000, tzinfo=UTC)))
    assert (message.created_at.seconds, message.created_at.nanos) == (-1, 250_000_000)
