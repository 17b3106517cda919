"""`python -m bench [--smoke] [--out DIR] [--no-service] [--no-operator] [--only-watchers|--only-search|--only-credentials|
--only-scim|--only-replicas|--only-kratos|--only-hashing|--only-ceiling|--only-subscriptions]`

Runs every measurement with its baseline in the same run, writes <out>/<UTC timestamp>.json and .png, prints
the table. A full run also refreshes bench/results/latest.json and latest.png (the README's figures).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import operator_bench, replicas_bench, results, rounds, service_bench, subscriptions_bench, tools

FULL = {
    "service": service_bench.Plan(
        seconds=2,
        level=16,
        rounds=3,
        seed_users=20000,
        events=200,
        warmup=True,
        watchers=200,
        watcher_creates_per_second=8,
        import_batches=5,
        import_batch_size=1000,
        paging_users=1_000_000,
        kratos=True,
    ),
    "operator": operator_bench.Plan(
        latency_count=40, rounds=3, scale_count=500, idle_seconds=20, resync_seconds=20, deadline_seconds=240
    ),
}
SMOKE = {
    "service": service_bench.Plan(
        seconds=1,
        level=8,
        rounds=2,
        seed_users=2000,
        events=10,
        warmup=False,
        watchers=20,
        watcher_creates_per_second=4,
        import_batches=2,
        import_batch_size=100,
        paging_users=20_000,
        kratos=False,
    ),
    "operator": operator_bench.Plan(
        latency_count=3, rounds=2, scale_count=10, idle_seconds=4, resync_seconds=2, deadline_seconds=60
    ),
}


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores = os.cpu_count() or 0
    return {
        "cpu": model,
        "cores": cores,
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "summary": f"{cores} cores {model}, {mem_gib:.0f} GiB",
        "note": (
            "One machine, loopback only: the load generators (wrk, ghz, the asyncpg driver), PostgreSQL, the "
            "server under test, etcd and kube-apiserver all share these cores, so every figure is lower than "
            "on dedicated hardware; the ratios compare parts measured under the same contention."
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="a bounded run of every part (about a minute)")
    p.add_argument("--out", type=Path, default=results.RESULTS, help="where to write the JSON and PNG")
    p.add_argument("--no-service", action="store_true")
    p.add_argument("--no-operator", action="store_true")
    only = p.add_mutually_exclusive_group()
    only.add_argument(
        "--only-watchers",
        action="store_const",
        const="watchers",
        dest="only",
        help="only the service's GET-beside-event-watchers figures (implies --no-operator)",
    )
    only.add_argument(
        "--only-search",
        action="store_const",
        const="search",
        dest="only",
        help="only the service's prefix-search figures and the GET they are compared with (implies --no-operator)",
    )
    only.add_argument(
        "--only-credentials",
        action="store_const",
        const="credentials",
        dest="only",
        help="only the service's import, password verification and GET-beside-verification figures"
        " (implies --no-operator)",
    )
    only.add_argument(
        "--only-scim",
        action="store_const",
        const="scim",
        dest="only",
        help="only the SCIM figures: get and userName filter against the REST get, and paging through"
        " paging_users users (implies --no-operator)",
    )
    only.add_argument(
        "--only-replicas",
        action="store_const",
        const="replicas",
        dest="only",
        help="only the read-from-a-replica figures: throughput against primary-only, a consistency token's"
        " latency (implies --no-operator)",
    )
    only.add_argument(
        "--only-kratos",
        action="store_const",
        const="kratos",
        dest="only",
        help="only the figures against the Go peer, Ory Kratos (built on first use; implies --no-operator)",
    )
    only.add_argument(
        "--only-hashing",
        action="store_const",
        const="hashing",
        dest="only",
        help="only the GET-while-16-clients-create figure (argon2id busy on the cores; implies --no-operator)",
    )
    only.add_argument(
        "--only-ceiling",
        action="store_const",
        const="ceiling",
        dest="only",
        help="only the REST get, unauthenticated and authenticated, against its composed ceiling (implies"
        " --no-operator)",
    )
    only.add_argument(
        "--only-subscriptions",
        action="store_const",
        const="subscriptions",
        dest="only",
        help="only the push-delivery figures: commit to receiver against SSE, deliveries per second, GET beside"
        " delivery (implies --no-operator)",
    )
    args = p.parse_args(argv)
    args.no_operator = args.no_operator or bool(args.only)
    plans = SMOKE if args.smoke else FULL
    started = time.monotonic()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    doc: dict[str, Any] = {
        "timestamp": stamp,
        "mode": "smoke" if args.smoke else "full",
        "command": (
            "python -m bench" + (" --smoke" if args.smoke else "") + f" --only-{args.only}"
            if args.only
            else "make bench"
            if not args.smoke
            else "python -m bench --smoke"
        ),
        "machine": machine(),
        "settings": {
            "concurrency": plans["service"].level,
            "rounds": plans["service"].rounds,
            "seconds_per_run": plans["service"].seconds,
            "service": {
                "DB_POOL_MAX": service_bench.POOL_SIZE,
                "argon2": "production defaults (time_cost 2, 19 MiB)",
                "logging": "JSON, as deployed: an access line for every error, write and slow request and for 1 in"
                " 100 fast, successful reads (ACCESS_LOG_SAMPLE)",
                "event_loop": "asyncio (the standard loop), as `userservice serve` and the composed ceilings; the peer"
                " runs uvloop and httptools, as its documentation recommends",
            },
        },
        "tools": {},
        "figures": [],
    }
    doc["settings"]["operator"] = {
        k: getattr(plans["operator"], k) for k in operator_bench.Plan.__dataclass_fields__
    }
    with tempfile.TemporaryDirectory(prefix="userservice-bench-") as tmp:
        workdir = Path(tmp)
        operator_run: Future[dict[str, Any]] | None = None
        with ThreadPoolExecutor(1) as background:
            if not args.no_operator and args.smoke and not args.no_service:
                # smoke: the numbers mean nothing, so both parts run at once to stay within a minute
                operator_run = background.submit(operator_bench.measure, plans["operator"], workdir)
            if not args.no_service:
                doc["tools"] = {
                    "http": f"wrk ({tools.version([tools.wrk(), '-v'])})",
                    "grpc": f"ghz {tools.GHZ_VERSION} (go install)",
                    "database_baseline": "python -m bench.pgload: asyncpg in a separate process",
                }
                if args.only not in ("replicas", "subscriptions"):
                    service = service_bench.measure(plans["service"], workdir, args.only)
                    doc["service"] = {k: v for k, v in service.items() if k != "figures"}
                    doc["figures"].extend(service["figures"])
                if args.only in (None, "replicas"):
                    replicas = replicas_bench.measure(plans["service"], workdir)
                    doc["replicas"] = {k: v for k, v in replicas.items() if k != "figures"}
                    doc["figures"].extend(replicas["figures"])
                if args.only in (None, "subscriptions"):
                    subscriptions = subscriptions_bench.measure(plans["service"], workdir)
                    doc["subscriptions"] = {k: v for k, v in subscriptions.items() if k != "figures"}
                    doc["figures"].extend(subscriptions["figures"])
            if not args.no_operator:
                op = (
                    operator_run.result()
                    if operator_run is not None
                    else operator_bench.measure(plans["operator"], workdir)
                )
                doc["operator"] = {k: v for k, v in op.items() if k != "figures"}
                doc["figures"].extend(rounds.judge(op["figures"]))
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["duration_seconds"] = round(time.monotonic() - started, 1)
    path = results.write(doc, args.out)
    charted = doc["figures"] and "service" in doc and not args.only
    png = results.chart(doc, path.with_suffix(".png")) if charted else None
    print()
    print(results.table(doc))
    print(f"\nwrote {path}" + (f" and {png}" if png else "") + f" in {doc['duration_seconds']} s")
    if not args.smoke and not args.no_service and not args.no_operator and args.out == results.RESULTS:
        shutil.copy(path, results.RESULTS / "latest.json")
        if png:
            shutil.copy(png, results.RESULTS / "latest.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
