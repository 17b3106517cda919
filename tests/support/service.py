"""Run the real service for tests: in-process (fast, same event loop) or as `userservice serve` subprocesses
(for SIGTERM, cross-replica and migration-race tests). Both listen on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from userservice.app import Bound, serve
from userservice.config import Config

# Real argon2id, but cheap: tests create many users. Production defaults are checked in the unit tests.
FAST_HASHING = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024"}
# Every listener on loopback, and no access checks unless a test asks for AUTH_MODE=kubernetes.
LOOPBACK = {
    "HTTP_HOST": "127.0.0.1",
    "HTTP_PORT": "0",
    "GRPC_HOST": "127.0.0.1",
    "GRPC_PORT": "0",
    "MANAGEMENT_HOST": "127.0.0.1",
    "MANAGEMENT_PORT": "0",
    "AUTH_MODE": "none",
}


@dataclass
class RunningService:
    http: str
    grpc: str
    stop: asyncio.Event
    management: str = ""


@contextlib.asynccontextmanager
async def in_process(
    dsn: str, env: dict[str, str] | None = None, **overrides: object
) -> AsyncIterator[RunningService]:
    """`env` adds or replaces environment settings (checked as at start-up); `overrides` set Config fields."""
    environment = {
        "DATABASE_URL": dsn,
        **LOOPBACK,
        "EVENT_POLL_SECONDS": "0.5",
        **FAST_HASHING,
        **(env or {}),
    }
    config = Config.from_env(environment, **overrides)
    scheme = "https" if config.tls_cert_file else "http"
    stop = asyncio.Event()
    bound: asyncio.Future[Bound] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(config, stop, on_ready=bound.set_result))
    done, _ = await asyncio.wait([task, bound], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # start-up failed: raise its error
    ports = bound.result()
    try:
        yield RunningService(
            f"{scheme}://127.0.0.1:{ports.http_port}",
            f"127.0.0.1:{ports.grpc_port}",
            stop,
            f"{scheme}://127.0.0.1:{ports.management_port}",
        )
    finally:
        stop.set()
        await task


@dataclass
class ServiceProcess:
    """`userservice serve` in a child process; its JSON log lines are collected in `logs`."""

    dsn: str
    env: dict[str, str] = field(default_factory=dict)
    logs: list[dict[str, object]] = field(default_factory=list)
    http: str = ""
    grpc: str = ""
    management: str = ""

    def start(self, timeout: float = 30) -> ServiceProcess:
        env = {
            **os.environ,
            "DATABASE_URL": self.dsn,
            **LOOPBACK,
            "LOG_FORMAT": "json",
            "EVENT_POLL_SECONDS": "0.5",
            **FAST_HASHING,
            **self.env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "userservice.cli", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = {"message": line.rstrip()}
                self.logs.append(record)
                if record.get("message") == "serving":
                    self.http = f"http://127.0.0.1:{record['http_port']}"
                    self.grpc = f"127.0.0.1:{record['grpc_port']}"
                    self.management = f"http://127.0.0.1:{record['management_port']}"
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service did not start: {self.logs}")
        return self

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
