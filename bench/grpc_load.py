"""gRPC load with ghz (a separate process; its own latency distribution)."""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
from pathlib import Path

from bench import tools
from bench.stack import LIST_COUNTRY, SEARCH_EMAIL_PREFIX
from bench.stats import Run

PROTO_ROOT = tools.ROOT / "proto"
PROTO = PROTO_ROOT / "userservice" / "v1" / "user_service.proto"
METHODS = {
    "get": "GetUser",
    "list": "ListUsers",
    "create": "CreateUser",
    "patch": "UpdateUser",
    "search": "ListUsers",
}


def _data(op: str, ids: list[str], tag: str) -> object:
    sample = random.sample(ids, min(len(ids), 2000))
    if op == "get":
        return [{"id": i} for i in sample]
    if op == "list":
        return {"filter": f'country = "{LIST_COUNTRY}"', "page_size": 50}
    if op == "create":
        nick = f"g{tag}x{{{{.RequestNumber}}}}"
        return {
            "user": {
                "first_name": "Ada",
                "last_name": "Lovelace",
                "nickname": nick,
                "email": f"{nick}@example.com",
                "country": "GB",
                "password": "correct horse battery staple",
            }
        }
    if op == "patch":
        return [{"user": {"id": i, "first_name": "P{{.RequestNumber}}"}} for i in sample]
    if op == "search":
        return {"filter": f'email = "{SEARCH_EMAIL_PREFIX}*"', "page_size": 50}
    raise ValueError(op)


def run(
    address: str, op: str, concurrency: int, seconds: float, ids: list[str], tag: str, target: str
) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(_data(op, ids, tag), f)
        data_file = f.name
    cmd = [
        tools.ghz(),
        "--insecure",
        f"--proto={PROTO}",
        f"--import-paths={PROTO_ROOT}",
        f"--call=userservice.v1.UserService.{METHODS[op]}",
        f"--data-file={data_file}",
        f"--concurrency={concurrency}",
        f"--connections={min(concurrency, 4)}",
        # One core's worth of goroutines, like wrk -t1 and the single-process asyncpg baseline: on two cores,
        # ghz spread over both took CPU from the server it measures (bare grpc.aio: ~3,800 calls/s, 5,000 with
        # --cpus=1).
        "--cpus=1",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        "--format=json",
        address,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        Path(data_file).unlink(missing_ok=True)
    if not proc.stdout.strip():
        raise RuntimeError(f"ghz failed ({proc.returncode}): {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout)
    dist = {int(d["percentage"]): d["latency"] for d in data.get("latencyDistribution") or []}
    codes = data.get("statusCodeDistribution") or {}
    ok = int(codes.get("OK", 0))
    # ghz closes its connections when the duration ends; the calls still in flight then fail on the client
    # ("use of closed network connection", or Canceled): not failures of the server.
    canceled = sum(
        int(n)
        for msg, n in (data.get("errorDistribution") or {}).items()
        if "use of closed network connection" in msg or "code = Canceled" in msg
    )
    return Run(
        tool="ghz",
        target=target,
        op=op,
        concurrency=concurrency,
        seconds=data["total"] / 1e9,
        requests=ok,
        errors=int(data["count"]) - ok - canceled,
        p50_ms=dist.get(50, 0) / 1e6,
        p99_ms=dist.get(99, 0) / 1e6,
    )
