"""Runs the schemathesis CLI (a pinned dev dependency) against a running service's /openapi.json."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.support.service import RunningService

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


async def run_schemathesis(service: RunningService, report_dir: Path, *options: str) -> str:
    """Fails unless schemathesis passes; returns its output."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "schemathesis"),
        "run",
        f"{service.http}/openapi.json",
        "--exclude-path",
        "/v1/events",  # an endless stream; covered by test_events.py
        "--seed",
        "1",
        "--generation-deterministic",
        "--report-dir",
        str(report_dir),
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.support.schemathesis_hooks"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    text = out.decode()
    assert proc.returncode == 0, text[-6000:]
    assert " passed" in text and "operations" in text.lower(), text[-3000:]
    return text
