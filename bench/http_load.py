"""HTTP load with wrk (a separate process; latency percentiles from its own histogram)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench import tools
from bench.stats import Run

SCRIPT = Path(__file__).parent / "lua" / "users.lua"


def run(
    base_url: str,
    op: str,
    concurrency: int,
    seconds: float,
    ids_file: Path,
    tag: str,
    target: str,
    token_file: Path | None = None,
    get_path: str = "/v1/users/",
) -> Run:
    """One wrk run; `token_file` holds a bearer token sent with every request."""
    cmd = [
        tools.wrk(),
        "-t1",  # every load generator gets at most one core's worth of threads (see grpc_load)
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout=10s",
        "-s",
        str(SCRIPT),
        base_url,
        "--",
        op,
        str(ids_file),
        tag,
        str(token_file) if token_file else "-",
        get_path,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    data = json.loads(line.removeprefix("BENCH"))
    return Run(
        tool="wrk",
        target=target,
        op=op,
        concurrency=concurrency,
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        errors=data["errors"] + data["status_errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
