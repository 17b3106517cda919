"""The README's "Try it" lines, as written there, against the service as `make run` starts it (a throwaway
embedded PostgreSQL, loopback, no authentication). Only the port differs: the README says 8080, the test takes
free ones."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.docs import shell_blocks
from tests.support.require import require

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def make_run() -> Iterator[int]:
    """`make run` with every port free (0) and DATABASE_URL unset; yields the REST port it logs."""
    require(shutil.which("curl") is not None, "curl not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MAKEFLAGS", "MFLAGS")}
    env |= {"HTTP_PORT": "0", "GRPC_PORT": "0", "MANAGEMENT_PORT": "0", "LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    port: list[int] = []
    serving = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("message") == "serving":
                port.append(int(record["http_port"]))
                serving.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 180
    while not serving.wait(0.2):
        assert proc.poll() is None and time.monotonic() < deadline, "make run did not serve:\n" + "".join(
            lines
        )
    try:
        yield port[0]
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: make dies of it, the service stops cleanly
        try:
            proc.wait(60)
            assert any('"message":"stopped"' in line.replace(" ", "") for line in lines), "".join(lines[-20:])
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def test_the_readme_try_it_lines_run_against_make_run(make_run: int) -> None:
    block = shell_blocks(ROOT / "README.md", "## Try it")[0]
    assert "localhost:8080" in block
    script = block.replace("localhost:8080", f"localhost:{make_run}")
    # -e: every line must succeed (curl -f fails on an HTTP error); -x: the trace names the line that did not.
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-x", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    out = result.stdout
    user_id = out.splitlines()[0]
    assert re.fullmatch(r"[0-9a-f-]{36}", user_id), out
    assert '"country":"FR"' in out.replace(" ", "") and 'etag: "v2"' in out.lower()
    assert f"/v1/users/{user_id}" in out or user_id in out
    assert "io.userservice.user.created.v1" in out and "io.userservice.user.deleted.v1" in out
    assert '"openapi":"3.1' in out.replace(" ", "")
