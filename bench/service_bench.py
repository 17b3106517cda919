"""The service's figures: REST (wrk) and gRPC (ghz) against the raw-asyncpg and bare-framework baselines,
GET under a create load, event latency, and the credential figures (import, verification, GET beside
verifications). Everything runs against one seeded PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from bench import credentials_bench, events_bench, grpc_load, http_load, stack, watchers_bench
from bench.stats import Run, percentile, ratio

OPS = ("get", "list", "create", "patch", "search")
SEARCH_GOAL = "get_p99_ratio <= 3"  # a prefix-search page of 50 against a GET of one user
POOL_SIZE = 10  # the service's DB_POOL_MAX default


@dataclass(frozen=True)
class Plan:
    seconds: float
    levels: tuple[int, ...]
    seed_users: int
    events: int
    warmup: bool
    watchers: int
    watcher_creates_per_second: float
    import_batches: int
    import_batch_size: int


def _tag() -> str:
    return uuid.uuid4().hex[:6]


def _pgload(dsn: str, op: str, c: int, seconds: float, ids_file: Path) -> Run:
    cmd = [sys.executable, "-m", "bench.pgload", dsn, op, str(c), str(seconds), str(ids_file), str(POOL_SIZE)]
    out = subprocess.run([*cmd, _tag()], capture_output=True, text=True, timeout=seconds + 60, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Run(
        "python asyncpg (separate process)",
        "asyncpg",
        op,
        c,
        data["seconds"],
        data["requests"],
        data["errors"],
        data["p50_ms"],
        data["p99_ms"],
    )


def _quiesce(dsn: str, timeout: float = 60) -> None:
    """Wait until requests still queued in the server (a create waits for its hash) have committed, so one
    run's load does not spill into the next."""

    async def wait() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            last, deadline = None, time.monotonic() + timeout
            while time.monotonic() < deadline:
                head = await conn.fetchval("SELECT count(*) FROM user_events")
                if head == last:
                    return
                last = head
                await asyncio.sleep(0.3)
        finally:
            await conn.close()

    asyncio.run(wait())


def _log(run: Run) -> Run:
    print(
        f"  {run.target:13} {run.op:7} c={run.concurrency:<3} {run.rps:9.1f} req/s  "
        f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  errors {run.errors}",
        flush=True,
    )
    return run


def measure(plan: Plan, workdir: Path, only: str | None = None) -> dict[str, Any]:
    """Every figure, or only those of one part: "watchers", "search" or "credentials"."""
    with stack.postgres() as (admin, pg_desc):
        dsn = asyncio.run(stack.fresh_database(admin))
        try:
            if only == "search":
                return _measure_search(plan, workdir, dsn, pg_desc)
            if only:
                return _measure_part(only, plan, workdir, dsn, pg_desc)
            return _measure(plan, workdir, dsn, pg_desc)
        finally:
            asyncio.run(stack.drop(admin, dsn))


def _seed(plan: Plan, workdir: Path, dsn: str) -> tuple[list[str], Path]:
    print(f"seeding {plan.seed_users} users", flush=True)
    ids = asyncio.run(stack.seed(dsn, plan.seed_users))
    ids_file = workdir / "ids.txt"
    ids_file.write_text("\n".join(ids[:-1]) + "\n")  # the last one is the event-latency user's
    return ids, ids_file


def _measure_part(part: str, plan: Plan, workdir: Path, dsn: str, pg_desc: str) -> dict[str, Any]:
    """Only the GET-with-watchers figures (`python -m bench --only-watchers`) or only the credential figures
    (`--only-credentials`)."""
    _, ids_file = _seed(plan, workdir, dsn)
    svc = stack.start_service(dsn, workdir)
    try:
        http = f"http://127.0.0.1:{svc.info['http_port']}"
        if plan.warmup:
            http_load.run(http, "get", plan.levels[-1], 2, ids_file, _tag(), "warmup")
        if part == "watchers":
            figures = _watcher_figures(_get_with_watchers(http, plan, ids_file, dsn), plan)
        else:
            figures = _credential_figures(_credentials(http, plan, workdir, dsn, ids_file))
    finally:
        svc.stop()
    return {"postgres": pg_desc, "seed_users": plan.seed_users, "figures": figures}


def _measure_search(plan: Plan, workdir: Path, dsn: str, pg_desc: str) -> dict[str, Any]:
    """Only the prefix-search figures and what they are compared with (`python -m bench --only-search`)."""
    ids, ids_file = _seed(plan, workdir, dsn)
    ops = ("get", "search")
    runs: list[Run] = []
    svc = stack.start_service(dsn, workdir)
    try:
        http = f"http://127.0.0.1:{svc.info['http_port']}"
        grpc_addr = f"127.0.0.1:{svc.info['grpc_port']}"
        if plan.warmup:
            for op in ops:
                http_load.run(http, op, plan.levels[-1], 2, ids_file, _tag(), "warmup")
                grpc_load.run(grpc_addr, op, plan.levels[-1], 2, ids, _tag(), "warmup")
        print("service search and get: REST (wrk), gRPC (ghz), raw asyncpg, interleaved", flush=True)
        for op in ops:
            for c in plan.levels:
                runs.append(_log(http_load.run(http, op, c, plan.seconds, ids_file, _tag(), "service-rest")))
                runs.append(_log(grpc_load.run(grpc_addr, op, c, plan.seconds, ids, _tag(), "service-grpc")))
                runs.append(_log(_pgload(dsn, op, c, plan.seconds, ids_file)))
    finally:
        svc.stop()
    return {
        "postgres": pg_desc,
        "seed_users": plan.seed_users,
        "runs": [r.to_json() for r in runs],
        "figures": _op_figures(runs, plan, ops),
    }


def _measure(plan: Plan, workdir: Path, dsn: str, pg_desc: str) -> dict[str, Any]:
    ids, ids_file = _seed(plan, workdir, dsn)
    event_user = UUID(ids.pop())  # written only by the event-latency measurement
    runs: list[Run] = []
    # Every part runs for the whole measurement (idle ones cost nothing), so each figure and its baselines
    # are measured one right after another: the machine's background load is then the same for all of them.
    svc = stack.start_service(dsn, workdir)
    processes = [svc]
    try:
        bare_http = stack.start_bare("http", workdir)
        processes.append(bare_http)
        bare_grpc = stack.start_bare("grpc", workdir)
        processes.append(bare_grpc)
        http = f"http://127.0.0.1:{svc.info['http_port']}"
        grpc_addr = f"127.0.0.1:{svc.info['grpc_port']}"
        bare_url = f"http://127.0.0.1:{bare_http.info['port']}"
        bare_addr = f"127.0.0.1:{bare_grpc.info['port']}"
        if plan.warmup:  # the service's first seconds (imports, statement caches, pool) are not measured
            for op in ("get", "list"):
                http_load.run(http, op, plan.levels[-1], 2, ids_file, _tag(), "warmup")
                grpc_load.run(grpc_addr, op, plan.levels[-1], 2, ids, _tag(), "warmup")
        print(
            "service REST (wrk), gRPC (ghz), raw asyncpg, bare aiohttp and grpc.aio, interleaved", flush=True
        )
        for op in OPS:
            for c in plan.levels:
                runs.append(_log(http_load.run(http, op, c, plan.seconds, ids_file, _tag(), "service-rest")))
                _quiesce(dsn)
                runs.append(_log(grpc_load.run(grpc_addr, op, c, plan.seconds, ids, _tag(), "service-grpc")))
                _quiesce(dsn)
                runs.append(_log(_pgload(dsn, op, c, plan.seconds, ids_file)))
                if op == "get":
                    runs.append(
                        _log(
                            http_load.run(bare_url, "get", c, plan.seconds, ids_file, _tag(), "bare-aiohttp")
                        )
                    )
                    runs.append(
                        _log(grpc_load.run(bare_addr, "get", c, plan.seconds, ids, _tag(), "bare-grpc"))
                    )
        under = _get_beside(http, plan, ids_file, "create", ids_file)
        _quiesce(dsn)
        watched = _get_with_watchers(http, plan, ids_file, dsn)
        credentials = _credentials(http, plan, workdir, dsn, ids_file)
        print("event latency", flush=True)
        watch = asyncio.run(events_bench.grpc_latencies(dsn, grpc_addr, event_user, plan.events))
        notify = asyncio.run(events_bench.notify_latencies(dsn, event_user, plan.events))
    finally:
        for proc in processes:
            proc.stop()
    return {
        "postgres": pg_desc,
        "seed_users": plan.seed_users,
        "runs": [r.to_json() for r in runs],
        "figures": _figures(runs, under, watch, notify, plan)
        + _watcher_figures(watched, plan)
        + _credential_figures(credentials),
    }


def _get_beside(http: str, plan: Plan, ids_file: Path, op: str, op_file: Path) -> dict[str, Any]:
    """GET load alone, then the same GET load while an `op` load (create or verify: argon2 off the loop) runs
    beside it."""
    c = plan.levels[len(plan.levels) // 2]
    print(f"GET p99 while running {op} (c={c} each)", flush=True)
    alone = _log(http_load.run(http, "get", c, plan.seconds, ids_file, _tag(), "service-rest"))
    results: dict[str, Run] = {}

    def load() -> None:
        results["load"] = http_load.run(http, op, c, plan.seconds + 1, op_file, _tag(), "service-rest")

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.5)
    loaded = _log(http_load.run(http, "get", c, plan.seconds, ids_file, _tag(), "service-rest"))
    thread.join()
    return {"alone": alone, "loaded": loaded, "load": _log(results["load"])}


def _credentials(http: str, plan: Plan, workdir: Path, dsn: str, ids_file: Path) -> dict[str, Any]:
    """Import through batchCreate and a raw COPY, batch by batch in turn; verifyPassword of the seeded users
    (right passwords: no failure is counted, so no lockout) and in-process argon2id; GET beside verifications."""
    print(
        f"import: {plan.import_batches} x batchCreate of {plan.import_batch_size} bcrypt-hashed users,"
        " each followed by a raw COPY of the same rows",
        flush=True,
    )
    hashes = credentials_bench.bcrypt_hashes(plan.import_batch_size)
    imported = asyncio.run(credentials_bench.import_rates(http, dsn, plan.import_batches, hashes))
    print(
        f"  batchCreate {imported['users_per_s']:9.1f} users/s  COPY {imported['baseline_users_per_s']:9.1f} users/s",
        flush=True,
    )
    _quiesce(dsn)
    logins_file = workdir / "logins.txt"
    logins_file.write_text("".join(f"seed{i}\n" for i in range(plan.seed_users)))
    c = plan.levels[len(plan.levels) // 2]
    workers = stack.service_setting("hash_workers")
    print(
        f"verifyPassword (c={c}), between two halves of argon2id in-process on {workers} threads", flush=True
    )
    # The baseline brackets the load in time: on a shared machine the other tenants' load drifts within seconds.
    raw_rates = [credentials_bench.raw_verify_rate(plan.seconds / 2, workers)]
    verify = _log(http_load.run(http, "verify", c, plan.seconds, logins_file, _tag(), "service-rest"))
    time.sleep(1)  # verifications still queued in the service when wrk stops finish before the second half
    raw_rates.append(credentials_bench.raw_verify_rate(plan.seconds / 2, workers))
    print(f"  in-process argon2id {raw_rates[0]:.1f} / {raw_rates[1]:.1f} verifications/s", flush=True)
    beside = _get_beside(http, plan, ids_file, "verify", logins_file)
    failed = verify.errors + beside["load"].errors
    if failed:  # a wrong password would be counted and could lock accounts: the figures would be of refusals
        raise RuntimeError(f"{failed} verifications of the right password failed")
    return {
        "import": imported,
        "batches": plan.import_batches,
        "batch_size": plan.import_batch_size,
        "verify": verify,
        "raw_verify_rates": raw_rates,
        "workers": workers,
        "beside": beside,
    }


def _get_with_watchers(http: str, plan: Plan, ids_file: Path, dsn: str) -> dict[str, Any]:
    """GET load alone, then beside idle event watchers, then beside the same watchers while users are created
    at a steady rate (each create's event goes to every watcher)."""
    c = plan.levels[len(plan.levels) // 2]
    print(f"GET p99 with {plan.watchers} event watchers (c={c})", flush=True)
    alone = _log(http_load.run(http, "get", c, plan.seconds, ids_file, _tag(), "service-rest"))
    with watchers_bench.Watchers(http, plan.watchers):
        time.sleep(1)
        idle = _log(http_load.run(http, "get", c, plan.seconds, ids_file, _tag(), "service-rest"))
    with watchers_bench.Watchers(http, plan.watchers, plan.watcher_creates_per_second) as writing:
        time.sleep(1)
        loaded = _log(http_load.run(http, "get", c, plan.seconds, ids_file, _tag(), "service-rest"))
        delivered, created = writing.events, writing.created
    _quiesce(dsn)
    # The same creates without watchers: how much of the difference the creates (argon2id) cost by themselves.
    with watchers_bench.Watchers(http, 0, plan.watcher_creates_per_second):
        time.sleep(1)
        creates_only = _log(http_load.run(http, "get", c, plan.seconds, ids_file, _tag(), "service-rest"))
    _quiesce(dsn)
    return {
        "alone": alone,
        "idle": idle,
        "writes": loaded,
        "creates_only": creates_only,
        "created": created,
        "delivered": delivered,
    }


def _watcher_figures(watched: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    alone = watched["alone"]
    figures = []
    for key, name, what in (
        ("idle", "get_with_idle_watchers", f"REST get beside {plan.watchers} idle SSE event watchers"),
        (
            "writes",
            "get_with_watchers_during_writes",
            f"REST get beside {plan.watchers} SSE event watchers while"
            f" {plan.watcher_creates_per_second:g} users/s are created",
        ),
    ):
        run = watched[key]
        fig: dict[str, Any] = {
            "id": f"rest.{name}.c{run.concurrency}",
            "group": "service",
            "what": what,
            "tool": "wrk",
            "rps": round(run.rps, 1),
            "p50_ms": _round(run.p50_ms),
            "p99_ms": _round(run.p99_ms),
            "errors": run.errors,
            "baseline": "the same GET load with no event watchers",
            "baseline_rps": round(alone.rps, 1),
            "baseline_p50_ms": _round(alone.p50_ms),
            "baseline_p99_ms": _round(alone.p99_ms),
            "rps_ratio": ratio(run.rps, alone.rps),
            "p50_ratio": ratio(run.p50_ms, alone.p50_ms),
            "p99_ratio": ratio(run.p99_ms, alone.p99_ms),
            "goal": "p99_ratio <= 1.5",
        }
        if key == "writes":
            creates_only = watched["creates_only"]
            fig.update(
                users_created=watched["created"],
                events_delivered=watched["delivered"],
                creates_only_p99_ms=_round(creates_only.p99_ms),
                creates_only_p99_ratio=ratio(creates_only.p99_ms, alone.p99_ms),
            )
        figures.append(fig)
    return figures


def _round(v: float) -> float:
    return round(v, 3)


def _beside_figure(beside: dict[str, Any], op: str, doing: str) -> dict[str, Any]:
    """GET while an argon2 load runs (see _get_beside), against the same GET load alone."""
    alone, loaded, load = beside["alone"], beside["loaded"], beside["load"]
    return {
        "id": f"rest.get_during_{op}.c{alone.concurrency}",
        "group": "service",
        "what": f"REST get while {load.concurrency} clients {doing} (argon2id, production cost)",
        "tool": "wrk",
        "rps": round(loaded.rps, 1),
        "p50_ms": _round(loaded.p50_ms),
        "p99_ms": _round(loaded.p99_ms),
        "errors": loaded.errors,
        f"{op}_rps": round(load.rps, 1),
        "baseline": f"the same GET load with no {op} load",
        "baseline_rps": round(alone.rps, 1),
        "baseline_p50_ms": _round(alone.p50_ms),
        "baseline_p99_ms": _round(alone.p99_ms),
        "rps_ratio": ratio(loaded.rps, alone.rps),
        "p50_ratio": ratio(loaded.p50_ms, alone.p50_ms),
        "p99_ratio": ratio(loaded.p99_ms, alone.p99_ms),
    }


def _credential_figures(measured: dict[str, Any]) -> list[dict[str, Any]]:
    imported, verify, workers = measured["import"], measured["verify"], measured["workers"]
    raw_rates = measured["raw_verify_rates"]
    raw_rps = sum(raw_rates) / len(raw_rates)
    return [
        {
            "id": "rest.batch_create",
            "group": "service",
            "what": (
                f"REST batchCreate, {measured['batches']} calls of {measured['batch_size']} users with bcrypt"
                f" hashes (cost {credentials_bench.BCRYPT_COST}), one call at a time"
            ),
            "tool": "aiohttp client",
            "users": imported["users"],
            "users_per_s": round(imported["users_per_s"], 1),
            "baseline": "raw asyncpg COPY (copy_records_to_table) of the same rows into a table LIKE users",
            "baseline_users_per_s": round(imported["baseline_users_per_s"], 1),
            "users_per_s_ratio": ratio(imported["users_per_s"], imported["baseline_users_per_s"]),
            "goal": "users_per_s_ratio >= 0.5",
        },
        {
            "id": f"rest.verify_password.c{verify.concurrency}",
            "group": "service",
            "what": f"REST verifyPassword, {verify.concurrency} concurrent, distinct seeded users, right password",
            "tool": "wrk",
            "rps": round(verify.rps, 1),
            "p50_ms": _round(verify.p50_ms),
            "p99_ms": _round(verify.p99_ms),
            "errors": verify.errors,
            "baseline": (
                f"argon2-cffi PasswordHasher.verify at the service's costs in a ThreadPoolExecutor of {workers}"
                " threads (PASSWORD_HASH_WORKERS), in the bench process, half right before the load and half"
                " right after"
            ),
            "baseline_rps": round(raw_rps, 1),
            "baseline_rps_before_after": [round(rate, 1) for rate in raw_rates],
            "rps_ratio": ratio(verify.rps, raw_rps),
            "goal": "rps_ratio >= 0.9",
        },
        _beside_figure(measured["beside"], "verify", "verify passwords"),
    ]


def _op_figures(runs: list[Run], plan: Plan, ops: tuple[str, ...]) -> list[dict[str, Any]]:
    """One figure per protocol, operation and concurrency, against raw asyncpg running the same SQL (and, for
    get, a bare framework handler when it was measured)."""
    by = {(r.target, r.op, r.concurrency): r for r in runs}
    figures: list[dict[str, Any]] = []
    for protocol, target, framework in (
        ("rest", "service-rest", "bare-aiohttp"),
        ("grpc", "service-grpc", "bare-grpc"),
    ):
        for op in ops:
            for c in plan.levels:
                run, base = by[(target, op, c)], by[("asyncpg", op, c)]
                fig: dict[str, Any] = {
                    "id": f"{protocol}.{op}.c{c}",
                    "group": "service",
                    "what": f"{protocol.upper()} {op}, {c} concurrent",
                    "tool": run.tool,
                    "rps": round(run.rps, 1),
                    "p50_ms": _round(run.p50_ms),
                    "p99_ms": _round(run.p99_ms),
                    "errors": run.errors,
                    "baseline": f"the same SQL through raw asyncpg, pool {POOL_SIZE}, {c} workers",
                    "baseline_rps": round(base.rps, 1),
                    "baseline_p50_ms": _round(base.p50_ms),
                    "baseline_p99_ms": _round(base.p99_ms),
                    "rps_ratio": ratio(run.rps, base.rps),
                    "p50_ratio": ratio(run.p50_ms, base.p50_ms),
                    "p99_ratio": ratio(run.p99_ms, base.p99_ms),
                }
                bare = by.get((framework, "get", c))
                if op == "get" and bare is not None:
                    fig.update(
                        framework_baseline=(
                            "bare aiohttp handler returning a constant"
                            if protocol == "rest"
                            else "bare grpc.aio unary call returning a constant"
                        ),
                        framework_rps=round(bare.rps, 1),
                        framework_p99_ms=_round(bare.p99_ms),
                        framework_rps_ratio=ratio(run.rps, bare.rps),
                    )
                if op in ("list", "search"):
                    get = by[(target, "get", c)]
                    fig.update(get_p99_ms=_round(get.p99_ms), get_p99_ratio=ratio(run.p99_ms, get.p99_ms))
                if op == "search":
                    fig.update(what=f"{protocol.upper()} email-prefix search, page of 50, {c} concurrent")
                    fig.update(goal=SEARCH_GOAL)
                figures.append(fig)
    return figures


def _figures(
    runs: list[Run], under: dict[str, Any], watch: list[float], notify: list[float], plan: Plan
) -> list[dict[str, Any]]:
    figures = _op_figures(runs, plan, OPS)
    figures.append(_beside_figure(under, "create", "create users"))
    w50, w99 = percentile(watch, 50) * 1000, percentile(watch, 99) * 1000
    n50, n99 = percentile(notify, 50) * 1000, percentile(notify, 99) * 1000
    figures.append(
        {
            "id": "events.commit_to_watch",
            "group": "service",
            "what": f"event latency, commit -> WatchUserEvents consumer (n={len(watch)})",
            "tool": "grpc.aio client",
            "n": len(watch),
            "p50_ms": _round(w50),
            "p99_ms": _round(w99),
            "baseline": "commit -> raw asyncpg LISTEN on the outbox channel (PostgreSQL NOTIFY alone)",
            "baseline_p50_ms": _round(n50),
            "baseline_p99_ms": _round(n99),
            "p50_ratio": ratio(w50, n50),
            "p99_ratio": ratio(w99, n99),
        }
    )
    return figures
