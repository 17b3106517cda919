"""argon2id password hashing, and verification of every accepted format (formats.py), run in
worker threads so hashing never stalls the event loop; the strength estimate of new passwords, in worker processes.

The hashes are C that releases the GIL, so threads suit them; the strength estimate (zxcvbn) is pure Python, and
in a thread it would hold the GIL for milliseconds at a time while the event loop waits its turn (measured: a GET's
p99 beside 16 clients creating users was 8 times its idle value with the estimate in threads, 1.9 without it).

The workers run at a lower scheduling priority than the event loop's thread (Linux gives every thread a nice value
of its own): while hashes keep every core busy, a request the loop has to answer still gets a core at once instead
of waiting for a time slice behind them. Nothing else runs on those workers, so nothing else is slowed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from argon2 import PasswordHasher, Type

from userservice.passwords import formats, strength


class Passwords:
    def __init__(
        self,
        time_cost: int,
        memory_kib: int,
        parallelism: int,
        workers: int,
        observe: Callable[[float], None],
        nice: int = 0,
    ) -> None:
        self._observe = observe  # told the seconds every hash or verification took, queueing included
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="argon2", initializer=lower_priority, initargs=(nice,)
        )
        self._workers, self._nice = workers, nice
        self._scorers = self._new_scorers()
        # A hash of nothing anyone knows: checking a password against it costs what checking a real one
        # does, so a login no user has takes as long to refuse as a wrong password.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(32))

    async def hash(self, password: str) -> str:
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._hasher.hash, password
            )
        finally:
            self._observe(time.perf_counter() - started)

    async def verify(self, password_hash: str, password: str) -> bool:
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, formats.verify, self._hasher, password_hash, password
            )
        finally:
            self._observe(time.perf_counter() - started)

    async def strength(self, password: str, personal: tuple[str, ...] = ()) -> int:
        """The strength estimate of a new password (strength.score), in the worker processes: it costs
        milliseconds of pure Python."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._scorers, strength.score, password, personal)
        except BrokenProcessPool:
            # A worker process died (killed from outside): the pool refuses all work from then on. A new one,
            # and this estimate once more.
            self._scorers.shutdown(wait=False)
            self._scorers = self._new_scorers()
            return await loop.run_in_executor(self._scorers, strength.score, password, personal)

    def _new_scorers(self) -> ProcessPoolExecutor:
        """Processes started on first use, from a fork server: forking this threaded process is not safe."""
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=lower_priority,
            initargs=(self._nice,),
        )

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a hash that just verified is of an older scheme or weaker costs than the current ones."""
        return formats.needs_rehash(self._hasher, password_hash)

    async def verify_nothing(self, password: str) -> bool:
        """Spends one verification and returns False: the answer for a login no user has."""
        await self.verify(self._dummy, password)
        return False

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._scorers.shutdown(wait=True)


def lower_priority(increment: int) -> None:
    """Raise the calling thread's nice value by `increment` (capped at 19). On Linux setpriority with a thread's
    id changes that thread alone (a worker process's only thread: the process); an unprivileged process may always
    raise its own nice value."""
    if increment <= 0:
        return
    thread = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + increment))
