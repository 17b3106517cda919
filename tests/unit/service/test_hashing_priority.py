"""The hashing threads run at a lower scheduling priority than the event loop's thread (PASSWORD_HASH_NICE), so
hashes that keep every core busy do not queue the loop's requests behind them. Read back from the kernel
(/proc/self/task/<tid>/stat), not from the code's own bookkeeping."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from userservice.config import Config, ConfigError
from userservice.passwords.hashing import Passwords


def _nice(thread_id: int) -> int:
    """The kernel's nice value of one thread of this process (field 19 of its stat line)."""
    after_name = (Path("/proc/self/task") / str(thread_id) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(after_name[16])  # after_name[0] is field 3


def _threads() -> set[int]:
    return {int(task.name) for task in Path("/proc/self/task").iterdir()}


@pytest.mark.parametrize("increment", [0, 7])
async def test_hashing_threads_run_below_the_event_loop_by_the_setting(increment: int) -> None:
    before = _threads()
    loop_thread = threading.get_native_id()
    loop_nice = _nice(loop_thread)
    passwords = Passwords(1, 64, 1, workers=2, observe=lambda _: None, nice=increment)
    try:
        assert await passwords.verify(await passwords.hash("a password"), "a password")
        hashing = _threads() - before
        assert hashing, "the hash ran on no thread of its own"
        assert {_nice(t) for t in hashing} == {min(19, loop_nice + increment)}
        assert _nice(loop_thread) == loop_nice  # the loop's own thread keeps its priority
    finally:
        passwords.close()


def test_the_setting_is_a_nice_increment() -> None:
    env = {"DATABASE_URL": "postgresql://u@localhost/db"}
    assert Config.from_env(env).hash_nice == 19
    assert Config.from_env({**env, "PASSWORD_HASH_NICE": "0"}).hash_nice == 0
    for bad in ("-1", "20"):
        with pytest.raises(ConfigError, match=f"PASSWORD_HASH_NICE must be 0-19 .*not {bad}"):
            Config.from_env({**env, "PASSWORD_HASH_NICE": bad})
