"""`python -m bench.loops [ROUNDS] [SECONDS]`: the service on the standard asyncio loop against the same
service on uvloop, interleaved rounds of REST get (16 and 64 connections) and gRPC get (16), one seeded
database. uvloop is not a dependency of the service: it is taken from the peer's virtualenv (same
interpreter), appended after the service's own packages."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from bench import grpc_load, http_load, rounds, stack, tools
from bench.stats import Run

LAUNCH = (
    "import runpy, sys; sys.path.append({site!r}); import uvloop; uvloop.install();"
    " sys.argv = ['userservice', 'serve']; runpy.run_module('userservice.cli', run_name='__main__')"
)


def main(argv: list[str]) -> int:
    n_rounds = int(argv[0]) if argv else 3
    seconds = float(argv[1]) if len(argv) > 1 else 3
    python = Path(tools.peer_python())
    site = next((python.parent.parent / "lib").glob("python3*/site-packages"))
    with tempfile.TemporaryDirectory() as tmp, stack.postgres() as (admin, _):
        workdir = Path(tmp)
        dsn = asyncio.run(stack.fresh_database(admin))
        ids_file = workdir / "ids.txt"
        ids = stack.seed_ids_file(dsn, 20000, ids_file)
        plain = stack.start_service(dsn, workdir)
        (workdir / "uv").mkdir()
        fast = stack.start_service(dsn, workdir / "uv", launch=["-c", LAUNCH.format(site=str(site))])
        try:
            steps = []
            for name, svc in (("asyncio", plain), ("uvloop", fast)):
                http, grpc_addr = (
                    f"http://127.0.0.1:{svc.info['http_port']}",
                    f"127.0.0.1:{svc.info['grpc_port']}",
                )
                http_load.run(http, "get", 64, 2, ids_file, "w", "warmup")
                for c in (16, 64):
                    steps.append((f"rest.get.c{c}.{name}", _rest(http, c, seconds, ids_file, name)))
                steps.append((f"grpc.get.c16.{name}", _grpc(grpc_addr, seconds, ids, name)))
            steps.sort(key=lambda s: s[0])  # asyncio, uvloop, asyncio, uvloop ... per figure
            runs = rounds.interleave(n_rounds, steps, _log)
        finally:
            plain.stop()
            fast.stop()
            asyncio.run(stack.drop(admin, dsn))
    out = {}
    for fig in ("rest.get.c16", "rest.get.c64", "grpc.get.c16"):
        out[fig] = rounds.compare({}, runs[f"{fig}.uvloop"], runs[f"{fig}.asyncio"])
        out[fig].pop("tool")
    print(json.dumps(out, indent=1))
    return 0


def _rest(url: str, c: int, seconds: float, ids_file: Path, name: str) -> Callable[[], Run]:
    return lambda: http_load.run(url, "get", c, seconds, ids_file, uuid.uuid4().hex[:6], name)


def _grpc(address: str, seconds: float, ids: list[str], name: str) -> Callable[[], Run]:
    return lambda: grpc_load.run(address, "get", 16, seconds, ids, uuid.uuid4().hex[:6], name)


def _log(run: Run) -> Run:
    print(
        f"  {run.target:8} {run.op} c={run.concurrency:<3} {run.rps:8.1f}/s p99 {run.p99_ms:7.2f} ms",
        flush=True,
    )
    return run


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
