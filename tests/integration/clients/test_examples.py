"""Each language's example program (clients/<lang>/example) runs against a real service with a token file:
it creates a user with an idempotency key, reads it back, lists it by a filter and follows three events. The
same program with a token the service refuses fails, so the token is what let it in."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.integration.clients.conftest import TokenFiles
from tests.support.require import require
from tests.support.service import RunningService
from userservice_client import Client, messages

pytestmark = pytest.mark.needs_kube

ROOT = Path(__file__).resolve().parents[3]
TS = ROOT / "clients" / "ts"


async def run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Runs a program without blocking the loop that serves it; its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def command(
    language: str, service: RunningService, token_file: Path
) -> tuple[list[str], Path, dict[str, str]]:
    """The command that runs the language's example, built first where it needs a build."""
    env = {"USERSERVICE_TARGET": service.grpc, "USERSERVICE_TOKEN_FILE": str(token_file)}
    if language == "python":
        return [sys.executable, "example/main.py"], ROOT / "clients" / "python", env
    if language == "go":
        require(shutil.which("go") is not None, "go is not installed")
        # The module's go.sum decides every dependency; nothing above it (a go.work) may.
        return (
            ["go", "run", "./example"],
            ROOT / "clients" / "go",
            {**env, "GOWORK": "off", "GOFLAGS": "-mod=readonly"},
        )
    require(shutil.which("node") is not None, "node is not installed")
    tsc = TS / "node_modules" / ".bin" / "tsc"
    require(tsc.exists(), "clients/ts/node_modules is missing (run `make ts-deps`)")
    code, out = await run([str(tsc), "-p", "tsconfig.json"], TS, {})
    assert code == 0, out
    env["USERSERVICE_URL"] = f"http://{env.pop('USERSERVICE_TARGET')}"
    return ["node", "dist/example/main.js"], TS, env


@pytest.mark.parametrize("language", ["python", "go", "ts"])
async def test_the_example_creates_reads_lists_and_follows_events(
    language: str, service: RunningService, token_files: TokenFiles
) -> None:
    async with Client(service.grpc, token_file=token_files.allowed) as users:
        for _ in range(2):  # with the example's own, at least three events to follow
            n = os.urandom(4).hex()
            await users.create_user(
                messages.User(
                    first_name="Ada",
                    last_name="Lovelace",
                    nickname=f"ada{n}",
                    email=f"ada{n}@example.com",
                    country="GB",
                    password="correct horse battery staple",
                )
            )
        args, cwd, env = await command(language, service, token_files.allowed)
        code, out = await run(args, cwd, env)
        assert code == 0, out
        created = re.search(r"^created (\S+) (\S+)$", out, re.M)
        assert created, out
        user_id, nickname = created.groups()
        stored = await users.get_user(user_id)
        assert stored.nickname == nickname
        assert re.search(rf"^read {user_id} {re.escape(stored.email)}$", out, re.M), out
        assert re.search(r"^listed 1$", out, re.M), out
        events = re.findall(r"^event (\S+) (io\.userservice\.user\.\S+) (\S+)$", out, re.M)
        assert len(events) == 3, out
        assert len({cursor for cursor, _, _ in events}) == 3

    code, out = await run(args, cwd, {**env, "USERSERVICE_TOKEN_FILE": str(token_files.refused)})
    assert code != 0 and "may-nothing may not create users" in out, out
