"""The hashing threads and the strength-estimating processes run at a lower scheduling priority than the event
loop's thread (PASSWORD_HASH_NICE), so hashes that keep every core busy do not queue the loop's requests behind
them. Read back from the kernel (/proc/<pid>/task/<tid>/stat), not from the code's own bookkeeping."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from userservice.config import Config, ConfigError
from userservice.passwords.hashing import Passwords


def _stat(path: Path) -> list[str]:
    """The fields of a stat line after the command's name: [0] is field 3 (state), [1] the parent's pid."""
    return path.read_text().rsplit(")", 1)[1].split()


def _nice(thread_id: int, pid: str = "self") -> int:
    """The kernel's nice value of one thread (field 19 of its stat line)."""
    return int(_stat(Path("/proc") / pid / "task" / str(thread_id) / "stat")[16])


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                out[int(proc.name)] = int(_stat(proc / "stat")[1])
            except (FileNotFoundError, ProcessLookupError):
                continue  # gone while listed
    return out


def _grandchildren() -> set[int]:
    """The processes whose parent is a child of this one (the pool's workers: children of the fork server)."""
    parents = _parents()
    return {pid for pid, parent in parents.items() if parents.get(parent) == os.getpid()}


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


async def test_strength_estimates_run_in_processes_below_the_event_loop_and_outlive_a_killed_one() -> None:
    loop_nice = _nice(threading.get_native_id())
    before = _grandchildren()
    passwords = Passwords(1, 64, 1, workers=1, observe=lambda _: None, nice=7)
    try:
        assert await passwords.strength("correct horse battery staple") == 4
        scorers = _grandchildren() - before
        assert len(scorers) == 1, "the estimate ran in no process of its own"
        (scorer,) = scorers
        assert _nice(scorer, str(scorer)) == min(19, loop_nice + 7)
        os.kill(scorer, signal.SIGKILL)
        assert await passwords.strength("password") == 0  # a new pool took over
        assert await passwords.strength("correct horse battery staple") == 4
        assert _grandchildren() - before - scorers, "no new process took over"
    finally:
        passwords.close()


def test_the_setting_is_a_nice_increment() -> None:
    env = {"DATABASE_URL": "postgresql://u@localhost/db"}
    assert Config.from_env(env).hash_nice == 19
    assert Config.from_env({**env, "PASSWORD_HASH_NICE": "0"}).hash_nice == 0
    for bad in ("-1", "20"):
        with pytest.raises(ConfigError, match=f"PASSWORD_HASH_NICE must be 0-19 .*not {bad}"):
            Config.from_env({**env, "PASSWORD_HASH_NICE": bad})
