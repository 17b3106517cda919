"""Consistency tokens, replica lag and the replica DSN list: the pure parts of reading from replicas."""

from __future__ import annotations

import pytest

from userservice.config import Config, ConfigError, read_urls
from userservice.domain import consistency
from userservice.domain.errors import InvalidArgument
from userservice.store.replicas import replay_lag


@pytest.mark.parametrize("lsn", [0, 1, 0x16B3748, 2**64 - 1])
def test_a_token_round_trips_and_is_opaque_url_safe_text(lsn: int) -> None:
    token = consistency.encode(lsn)
    assert token.isascii() and "=" not in token and "/" not in token and "+" not in token
    assert consistency.decode(token, "X-Consistency-Token") == lsn


@pytest.mark.parametrize(
    "token",
    ["", "nonsense!", consistency.encode(5)[:-1], "AgAAAAAAAAAF", "AQAAAAAAAAAAAAA", "ü" * 12],
)
def test_anything_but_an_issued_token_is_invalid_and_names_the_field(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        consistency.decode(token, "x-consistency-token")
    assert refused.value.violations[0].field == "x-consistency-token"


def test_no_token_asks_for_nothing() -> None:
    assert consistency.read_position(None, "h") is None
    assert consistency.read_position("  ", "h") is None


def test_a_scope_is_seen_only_inside_it_and_keeps_the_highest_write() -> None:
    assert consistency.current() is None
    with consistency.scope(7, records_writes=True) as state:
        assert consistency.current() is state and state.read_after == 7
        state.note_write(20)
        state.note_write(10)
    assert consistency.current() is None
    assert state.written == 20


def test_lag_is_how_long_ago_the_primary_first_wrote_past_the_replay_position() -> None:
    history = [(100.0, 50), (101.0, 80), (102.0, 90)]
    assert replay_lag(history, 90, now=103.0) == 0.0  # caught up
    assert replay_lag(history, 85, now=103.0) == pytest.approx(1.0)  # missing what was written by 102
    assert replay_lag(history, 60, now=103.0) == pytest.approx(2.0)
    assert replay_lag(history, 10, now=103.0) == pytest.approx(3.0)


def test_an_idle_primary_means_no_lag_however_old_the_last_transaction() -> None:
    assert replay_lag([(0.0, 90), (500.0, 90), (1000.0, 90)], 90, now=1000.0) == 0.0


def test_read_urls_split_on_commas_between_dsns_not_between_hosts_of_one() -> None:
    text = "postgresql://u:p@a:5432,b:5432/db , postgres://u@c/db"
    assert read_urls(text) == ["postgresql://u:p@a:5432,b:5432/db", "postgres://u@c/db"]
    assert read_urls("") == []


def test_replica_settings_are_checked_without_echoing_the_dsn() -> None:
    env = {"DATABASE_URL": "postgresql://localhost/db"}
    with pytest.raises(ConfigError) as bad:
        Config.from_env({**env, "DATABASE_READ_URL": "mysql://user:hunter2@replica/db"})
    assert "DATABASE_READ_URL must be a postgresql:// URL" in str(bad.value)
    assert "hunter2" not in str(bad.value)
    with pytest.raises(ConfigError, match="READS_WITHOUT_TOKEN"):
        Config.from_env({**env, "READS_WITHOUT_TOKEN": "sometimes"})
    config = Config.from_env({**env, "DATABASE_READ_URL": "postgresql://r1/db,postgresql://r2/db"})
    assert read_urls(config.database_read_url) == ["postgresql://r1/db", "postgresql://r2/db"]
    assert config.reads_without_token == "primary"
