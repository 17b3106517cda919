"""`python -m bench.profile [rest|grpc] [get|list|create|patch] [SECONDS] [CONCURRENCY]`

Profiles the service under one load with py-spy (sampling the `userservice serve` process, GIL-holding
samples only) and prints where the time goes: the functions with the most samples, inclusive and self.
The collapsed stacks are kept in bench/results/profile-<proto>-<op>-<UTC timestamp>.txt (not committed).
"""

from __future__ import annotations

import asyncio
import datetime
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from bench import grpc_load, http_load, results, stack


def summarize(collapsed: str, top: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text:
            continue
        count = int(count_text)
        total += count
        frames = stack_text.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    out = [f"{total} samples", "", "inclusive:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out += ["", "self:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    proto = argv[0] if argv else "rest"
    op = argv[1] if len(argv) > 1 else "get"
    seconds = float(argv[2]) if len(argv) > 2 else 15
    concurrency = int(argv[3]) if len(argv) > 3 else 16
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results.RESULTS / f"profile-{proto}-{op}-{stamp}.txt"
    results.RESULTS.mkdir(exist_ok=True)
    with stack.postgres() as (admin, _), tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        dsn = asyncio.run(stack.fresh_database(admin))
        ids_file = workdir / "ids.txt"
        ids = stack.seed_ids_file(dsn, 20000, ids_file)
        svc = stack.start_service(dsn, workdir)
        try:
            http = f"http://127.0.0.1:{svc.info['http_port']}"
            grpc_addr = f"127.0.0.1:{svc.info['grpc_port']}"

            def load(secs: float) -> None:
                if proto == "rest":
                    run = http_load.run(http, op, concurrency, secs, ids_file, "prof", "service-rest")
                else:
                    run = grpc_load.run(grpc_addr, op, concurrency, secs, ids, "prof", "service-grpc")
                print(
                    f"{proto} {op} c={concurrency}: {run.rps:.1f} req/s, p99 {run.p99_ms:.1f} ms", flush=True
                )

            load(2)  # warm up
            loader = threading.Thread(target=load, args=(seconds + 2,))
            loader.start()
            subprocess.run(
                [
                    spy,
                    "record",
                    "--pid",
                    str(svc.pid),
                    "--duration",
                    str(int(seconds)),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                check=True,
                capture_output=True,
            )
            loader.join()
        finally:
            svc.stop()
            asyncio.run(stack.drop(admin, dsn))
    print(summarize(out.read_text()))
    print(f"\ncollapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
