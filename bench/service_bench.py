"""The service's figures: REST (wrk) and gRPC (ghz) against the raw-asyncpg and bare-framework baselines,
GET under a create load, event latency, and the credential figures (import, verification, GET beside
verifications). Everything runs against one seeded PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from bench import (
    auth_bench,
    credentials_bench,
    events_bench,
    grpc_load,
    http_load,
    kratos,
    rounds,
    scim_bench,
    stack,
    watchers_bench,
)
from bench.stats import Run, percentile

OPS = ("get", "list", "search", "create", "patch")
SEARCH_GOAL = "p99_ratio <= 3"  # a prefix-search page of 50 against a GET of one user
LIST_GOAL = "p99_ratio <= 2.5"  # a list page of 50 against a GET of one user
BESIDE_GOAL = (
    "p99_ratio <= 2"  # a GET while users are created (their hashes busy the cores) against a GET alone
)
LABEL = {"rest": "REST", "grpc": "gRPC"}
POOL_SIZE = 10  # the service's DB_POOL_MAX default


@dataclass(frozen=True)
class Plan:
    seconds: float
    level: int  # concurrent clients of every load run
    rounds: int  # interleaved rounds of every figure and its baselines
    seed_users: int
    events: int
    warmup: bool
    watchers: int
    watcher_creates_per_second: float
    import_batches: int
    import_batch_size: int
    paging_users: int  # the SCIM paging walk goes through this many users (seeded on top of seed_users)
    kratos: bool  # the Go peer (built on the first full run; never in the smoke run)


# Every write appends a change event: their count settles once queued writes have committed.
EVENTS_COUNT = "SELECT count(*) FROM user_events"


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


def _log(run: Run) -> Run:
    print(
        f"  {run.target:15} {run.op:7} c={run.concurrency:<3} {run.rps:9.1f} req/s  "
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
            if only == "scim":
                return _measure_scim(plan, workdir, dsn, pg_desc)
            if only == "kratos":
                return _measure_kratos(plan, workdir, admin, dsn, pg_desc)
            if only == "ceiling":
                return _measure_ceiling(plan, workdir, dsn, pg_desc)
            if only:
                return _measure_part(only, plan, workdir, dsn, pg_desc)
            return _measure(plan, workdir, admin, dsn, pg_desc)
        finally:
            asyncio.run(stack.drop(admin, dsn))


def _seed(plan: Plan, workdir: Path, dsn: str) -> tuple[list[str], Path]:
    print(f"seeding {plan.seed_users} users", flush=True)
    ids = asyncio.run(stack.seed(dsn, plan.seed_users))
    ids_file = workdir / "ids.txt"
    ids_file.write_text("\n".join(ids[:-1]) + "\n")  # the last one is the event-latency user's
    return ids, ids_file


def _measure_part(part: str, plan: Plan, workdir: Path, dsn: str, pg_desc: str) -> dict[str, Any]:
    """Only the GET-with-watchers figures (`python -m bench --only-watchers`), only the GET-while-creating figure
    (`--only-hashing`) or only the credential figures (`--only-credentials`)."""
    ids, ids_file = _seed(plan, workdir, dsn)
    svc = stack.start_service(dsn, workdir)
    try:
        loads = Loads(plan, svc, ids, ids_file, dsn)
        if plan.warmup:
            http_load.run(loads.http, "get", plan.level, 2, ids_file, _tag(), "warmup")
        if part == "watchers":
            figures = _watcher_figures(_get_with_watchers(loads.http, plan, ids_file, dsn), plan)
        elif part == "hashing":
            figures = [
                _beside_figure(_get_beside(loads, "create", ids_file), "create", "create users", BESIDE_GOAL)
            ]
        else:
            figures = _credential_figures(_credentials(loads, workdir))
    finally:
        svc.stop()
    return {"postgres": pg_desc, "seed_users": plan.seed_users, "figures": rounds.judge(figures)}


def _measure_search(plan: Plan, workdir: Path, dsn: str, pg_desc: str) -> dict[str, Any]:
    """Only the prefix-search figures and the get they are compared with (`python -m bench --only-search`)."""
    ids, ids_file = _seed(plan, workdir, dsn)
    svc = stack.start_service(dsn, workdir)
    try:
        loads = Loads(plan, svc, ids, ids_file, dsn)
        loads.warm(("get", "search"))
        print("service search and get: REST (wrk), gRPC (ghz), interleaved rounds", flush=True)
        runs = rounds.interleave(plan.rounds, [*loads.service("get"), *loads.service("search")], _log)
    finally:
        svc.stop()
    figures = [_against_get(runs, proto, "search", plan.level) for proto in ("rest", "grpc")]
    return {
        "postgres": pg_desc,
        "seed_users": plan.seed_users,
        "runs": _runs_json(runs),
        "figures": rounds.judge(figures),
    }


def _measure_scim(plan: Plan, workdir: Path, dsn: str, pg_desc: str) -> dict[str, Any]:
    """Only the SCIM figures (`python -m bench --only-scim`): get and filter against the REST get, then paging."""
    ids, ids_file = _seed(plan, workdir, dsn)
    svc = stack.start_service(dsn, workdir)
    try:
        loads = Loads(plan, svc, ids, ids_file, dsn)
        loads.warm(("get",))
        steps = [
            *loads.service("get")[:1],
            *scim_bench.steps(lambda op, target: loads.rest(loads.http, op, target)),
        ]
        if plan.warmup:
            for _, step in steps[1:]:
                step()
        print("SCIM get and filter against the REST get: wrk, interleaved rounds", flush=True)
        runs = rounds.interleave(plan.rounds, steps, _log)
        figures = [
            *scim_bench.figures(runs, plan.level),
            scim_bench.paging(dsn, loads.http, plan.paging_users, plan.seed_users),
        ]
    finally:
        svc.stop()
    return {
        "postgres": pg_desc,
        "seed_users": plan.seed_users,
        "runs": _runs_json(runs),
        "figures": rounds.judge(figures),
    }


class Loads:
    """The load runs against the service and its baselines, as named steps for rounds.interleave."""

    def __init__(self, plan: Plan, svc: stack.Process, ids: list[str], ids_file: Path, dsn: str) -> None:
        self.plan, self.ids, self.ids_file, self.dsn = plan, ids, ids_file, dsn
        self.http = f"http://127.0.0.1:{svc.info['http_port']}"
        self.grpc = f"127.0.0.1:{svc.info['grpc_port']}"

    def rest(
        self,
        url: str,
        op: str,
        target: str,
        ids_file: Path | None = None,
        token: Path | None = None,
        get_path: str = "/v1/users/",
    ) -> Callable[[], Run]:
        plan, ids = self.plan, ids_file or self.ids_file
        return lambda: http_load.run(url, op, plan.level, plan.seconds, ids, _tag(), target, token, get_path)

    def grpc_call(self, address: str, op: str, target: str) -> Callable[[], Run]:
        plan = self.plan
        return lambda: grpc_load.run(address, op, plan.level, plan.seconds, self.ids, _tag(), target)

    def database(self, op: str) -> Callable[[], Run]:
        return lambda: _pgload(self.dsn, op, self.plan.level, self.plan.seconds, self.ids_file)

    def settled(self, step: Callable[[], Run]) -> Callable[[], Run]:
        """`step`, then wait until what it queued has committed (creates wait for their hash)."""

        def run() -> Run:
            result = step()
            stack.quiesce(self.dsn, EVENTS_COUNT)
            return result

        return run

    def service(self, op: str) -> list[tuple[str, Callable[[], Run]]]:
        rest, grpc = self.rest(self.http, op, "service-rest"), self.grpc_call(self.grpc, op, "service-grpc")
        if op == "create":
            rest, grpc = self.settled(rest), self.settled(grpc)
        return [(f"rest.{op}", rest), (f"grpc.{op}", grpc)]

    def warm(self, ops: tuple[str, ...]) -> None:
        """The service's first seconds (imports, statement caches, pool) are not measured."""
        if self.plan.warmup:
            for op in ops:
                http_load.run(self.http, op, self.plan.level, 2, self.ids_file, _tag(), "warmup")
                grpc_load.run(self.grpc, op, self.plan.level, 2, self.ids, _tag(), "warmup")


def _runs_json(runs: dict[str, list[Run]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [r.to_json() for r in series] for name, series in runs.items()}


GoPeer = dict[str, tuple[str, Callable[[], Run]]]  # the Go peer's steps, by the service step each follows


def _kratos_steps(loads: Loads, peer: kratos.Kratos, ids_file: Path, workers: int) -> GoPeer:
    """The Go peer's admin get, list and create, and argon2id hashing on the service's hash threads, by the
    service step they follow in each round."""
    plan = loads.plan

    def create() -> Run:
        run = loads.rest(peer.url, "kratos_create", "kratos-admin", ids_file)()
        peer.quiesce()
        return run

    return {
        "rest.get_authenticated": (
            "kratos.get",
            loads.rest(peer.url, "get", "kratos-admin", ids_file, get_path="/admin/identities/"),
        ),
        "rest.list": ("kratos.list", loads.rest(peer.url, "kratos_list", "kratos-admin", ids_file)),
        "rest.create": ("kratos.create", create),
        "grpc.create": ("argon2.hash", lambda: credentials_bench.raw_argon2(plan.seconds, workers, "hash")),
    }


def _start_kratos(
    loads: Loads, admin: str, workdir: Path, running: contextlib.ExitStack, users: int
) -> tuple[GoPeer, dict[str, Any]]:
    """Kratos started (stopped when `running` closes), seeded with the service's users and warmed up: its steps
    and what the results file says of it."""
    go = kratos.Kratos(admin, POOL_SIZE, workdir)
    running.callback(go.stop)
    print(f"seeding Kratos with the same {users} users", flush=True)
    started = time.monotonic()
    kratos_ids = workdir / "kratos-ids.txt"
    go.seed(asyncio.run(kratos.seeded_users(loads.dsn)), kratos_ids)
    info = {
        "version": go.version,
        "build_seconds": go.build_seconds,
        "seed_seconds": round(time.monotonic() - started, 1),
    }
    http_load.run(
        go.url, "get", loads.plan.level, 1, kratos_ids, _tag(), "warmup", None, "/admin/identities/"
    )
    return _kratos_steps(loads, go, kratos_ids, stack.service_setting("hash_workers")), info


def _start_services(
    running: contextlib.ExitStack, workdir: Path, dsn: str
) -> tuple[stack.Process, str, auth_bench.Identity]:
    """The service twice, stopped when `running` closes: without authentication, and checking every caller's
    token against a kube-apiserver (its URL and the caller's identity beside it)."""
    svc = stack.start_service(dsn, workdir)
    running.callback(svc.stop)
    identity = running.enter_context(auth_bench.service_account(workdir))
    (workdir / "authenticated").mkdir()
    svc_auth = stack.start_service(dsn, workdir / "authenticated", **identity.service_env)
    running.callback(svc_auth.stop)
    return svc, f"http://127.0.0.1:{svc_auth.info['http_port']}", identity


def _measure_kratos(plan: Plan, workdir: Path, admin: str, dsn: str, pg_desc: str) -> dict[str, Any]:
    """Only the figures against the Go peer (`python -m bench --only-kratos`)."""
    ids, ids_file = _seed(plan, workdir, dsn)
    with contextlib.ExitStack() as running:
        svc, auth_url, identity = _start_services(running, workdir, dsn)
        loads = Loads(plan, svc, ids, ids_file, dsn)
        go_peer, info = _start_kratos(loads, admin, workdir, running, len(ids))
        loads.warm(("get", "list"))
        http_load.run(auth_url, "get", plan.level, 2, ids_file, _tag(), "warmup", identity.token_file)
        own = [
            (
                "rest.get_authenticated",
                loads.rest(auth_url, "get", "service-rest-auth", token=identity.token_file),
            ),
            ("rest.list", loads.rest(loads.http, "list", "service-rest")),
            ("rest.create", loads.settled(loads.rest(loads.http, "create", "service-rest"))),
            ("grpc.create", loads.settled(loads.grpc_call(loads.grpc, "create", "service-grpc"))),
        ]
        print(f"{plan.rounds} interleaved rounds: the service against Kratos and raw argon2id", flush=True)
        runs = rounds.interleave(plan.rounds, _with_go_peer(own, go_peer), _log)
    return {
        "postgres": pg_desc,
        "seed_users": plan.seed_users,
        "kratos": info,
        "runs": _runs_json(runs),
        "figures": rounds.judge(_kratos_figures(runs, plan.level)),
    }


def _measure_ceiling(plan: Plan, workdir: Path, dsn: str, pg_desc: str) -> dict[str, Any]:
    """Only the REST get, unauthenticated and authenticated, against the composed ceiling
    (`python -m bench --only-ceiling`)."""
    ids, ids_file = _seed(plan, workdir, dsn)
    with contextlib.ExitStack() as running:
        svc, auth_url, identity = _start_services(running, workdir, dsn)
        ceiling = stack.start_ceiling("http", dsn, POOL_SIZE, workdir)
        running.callback(ceiling.stop)
        loads = Loads(plan, svc, ids, ids_file, dsn)
        loads.warm(("get",))
        http_load.run(auth_url, "get", plan.level, 2, ids_file, _tag(), "warmup", identity.token_file)
        steps = [
            ("rest.get", loads.rest(loads.http, "get", "service-rest")),
            (
                "rest.get_authenticated",
                loads.rest(auth_url, "get", "service-rest-auth", token=identity.token_file),
            ),
            (
                "ceiling.rest.get",
                loads.rest(f"http://127.0.0.1:{ceiling.info['port']}", "get", "ceiling-aiohttp"),
            ),
        ]
        print(f"{plan.rounds} interleaved rounds: REST get against the composed ceiling", flush=True)
        runs = rounds.interleave(plan.rounds, steps, _log)
    figures = [
        rounds.compare(
            {"id": f"rest.get.c{plan.level}", "group": "service", "baseline": "composed ceiling"},
            runs["rest.get"],
            runs["ceiling.rest.get"],
        ),
        _authenticated_vs_ceiling(runs, plan.level),
    ]
    return {
        "postgres": pg_desc,
        "seed_users": plan.seed_users,
        "runs": _runs_json(runs),
        "figures": rounds.judge(figures),
    }


def _with_go_peer(
    steps: list[tuple[str, Callable[[], Run]]], go_peer: GoPeer
) -> list[tuple[str, Callable[[], Run]]]:
    """`steps` with each Go peer step right after the service step it is compared with."""
    return [step for own in steps for step in (own, *((go_peer[own[0]],) if own[0] in go_peer else ()))]


def _measure(plan: Plan, workdir: Path, admin: str, dsn: str, pg_desc: str) -> dict[str, Any]:
    ids, ids_file = _seed(plan, workdir, dsn)
    event_user = UUID(ids.pop())  # written only by the event-latency measurement
    # Every part runs for the whole measurement (idle ones cost nothing), so each figure and its baselines
    # are measured in turn, round after round: the machine's background load is then the same for all of them.
    with contextlib.ExitStack() as running:

        def start(proc: stack.Process) -> stack.Process:
            running.callback(proc.stop)
            return proc

        svc, auth_url, identity = _start_services(running, workdir, dsn)
        ceiling_http = start(stack.start_ceiling("http", dsn, POOL_SIZE, workdir))
        ceiling_grpc = start(stack.start_ceiling("grpc", dsn, POOL_SIZE, workdir))
        peer = start(stack.start_peer(dsn, POOL_SIZE, workdir))
        loads = Loads(plan, svc, ids, ids_file, dsn)
        go_peer, kratos_info = (
            _start_kratos(loads, admin, workdir, running, len(ids) + 1) if plan.kratos else ({}, {})
        )
        loads.warm(("get", "list"))
        peer_url = f"http://127.0.0.1:{peer.info['port']}"
        peer_token = auth_bench.peer_token(peer_url, workdir)
        for url, token, path in ((peer_url, None, "/v1/users/"), (peer_url, peer_token, "/users/")):
            http_load.run(url, "get", plan.level, 1, ids_file, _tag(), "warmup", token, path)
        http_load.run(auth_url, "get", plan.level, 2, ids_file, _tag(), "warmup", identity.token_file)
        steps = [
            *loads.service("get"),
            (
                "rest.get_authenticated",
                loads.rest(auth_url, "get", "service-rest-auth", token=identity.token_file),
            ),
            (
                "ceiling.rest.get",
                loads.rest(f"http://127.0.0.1:{ceiling_http.info['port']}", "get", "ceiling-aiohttp"),
            ),
            (
                "ceiling.grpc.get",
                loads.grpc_call(f"127.0.0.1:{ceiling_grpc.info['port']}", "get", "ceiling-grpc"),
            ),
            ("peer.get", loads.rest(peer_url, "get", "peer-fastapi")),
            (
                "peer.admin_get",
                loads.rest(peer_url, "get", "peer-fastapi-admin", token=peer_token, get_path="/users/"),
            ),
            ("asyncpg.get", loads.database("get")),
        ]
        steps += scim_bench.steps(lambda op, target: loads.rest(loads.http, op, target))
        for op in OPS[1:]:
            steps += loads.service(op)
            if op != "search":  # search is compared with get
                steps.append(
                    (
                        f"asyncpg.{op}",
                        loads.settled(loads.database(op)) if op == "create" else loads.database(op),
                    )
                )
        print(
            f"{plan.rounds} interleaved rounds: service REST (wrk; unauthenticated and authenticated) and gRPC"
            " (ghz), composed ceilings, the peer (unauthenticated and its admin read), raw asyncpg",
            flush=True,
        )
        runs = rounds.interleave(plan.rounds, _with_go_peer(steps, go_peer), _log)
        under = _get_beside(loads, "create", ids_file)
        stack.quiesce(dsn, EVENTS_COUNT)
        watched = _get_with_watchers(loads.http, plan, ids_file, dsn)
        credentials = _credentials(loads, workdir)
        print("event latency", flush=True)
        watch, notify = [], []
        for _ in range(plan.rounds):
            watch.append(asyncio.run(events_bench.grpc_latencies(dsn, loads.grpc, event_user, plan.events)))
            notify.append(asyncio.run(events_bench.notify_latencies(dsn, event_user, plan.events)))
        # Last: it adds users to the database every figure before it measured.
        walked = scim_bench.paging(dsn, loads.http, plan.paging_users, plan.seed_users)
    figures = (
        _figures(runs, under, watch, notify, plan)
        + scim_bench.figures(runs, plan.level)
        + [walked]
        + (_kratos_figures(runs, plan.level) if go_peer else [])
        + _watcher_figures(watched, plan)
        + _credential_figures(credentials)
    )
    return {
        "postgres": pg_desc,
        "seed_users": plan.seed_users,
        **({"kratos": kratos_info} if kratos_info else {}),
        "runs": _runs_json(runs),
        "figures": rounds.judge(figures),
    }


def _get_beside(loads: Loads, op: str, op_file: Path) -> dict[str, list[Run]]:
    """Rounds of: GET load alone, then the same GET load while an `op` load (create or verify: argon2 off the
    loop) runs beside it."""
    plan = loads.plan
    print(f"GET p99 while running {op} (c={plan.level} each), {plan.rounds} rounds", flush=True)
    out: dict[str, list[Run]] = {"alone": [], "loaded": [], "load": []}
    for _ in range(plan.rounds):
        out["alone"].append(_log(loads.rest(loads.http, "get", "service-rest")()))
        thread = threading.Thread(
            target=lambda: out["load"].append(
                http_load.run(loads.http, op, plan.level, plan.seconds + 1, op_file, _tag(), "service-rest")
            )
        )
        thread.start()
        time.sleep(0.5)
        out["loaded"].append(_log(loads.rest(loads.http, "get", "service-rest")()))
        thread.join()
        _log(out["load"][-1])
        if op == "create":
            stack.quiesce(loads.dsn, EVENTS_COUNT)
    return out


def _credentials(loads: Loads, workdir: Path) -> dict[str, Any]:
    """Import through batchCreate and a raw COPY, batch by batch in turn; verifyPassword of the seeded users
    (right passwords: no failure is counted, so no lockout) and in-process argon2id, in rounds; GET beside
    verifications."""
    plan, dsn = loads.plan, loads.dsn
    print(
        f"import: {plan.import_batches} x batchCreate of {plan.import_batch_size} bcrypt-hashed users,"
        " each followed by a raw COPY of the same rows",
        flush=True,
    )
    hashes = credentials_bench.bcrypt_hashes(plan.import_batch_size)
    imported = asyncio.run(credentials_bench.import_rates(loads.http, dsn, plan.import_batches, hashes))
    print(
        f"  batchCreate {rounds.median(imported['users_per_s']):9.1f} users/s"
        f"  COPY {rounds.median(imported['baseline_users_per_s']):9.1f} users/s",
        flush=True,
    )
    stack.quiesce(dsn, EVENTS_COUNT)
    logins_file = workdir / "logins.txt"
    logins_file.write_text("".join(f"seed{i}\n" for i in range(plan.seed_users)))
    workers = stack.service_setting("hash_workers")
    print(
        f"verifyPassword (c={plan.level}) and argon2id in-process on {workers} threads, {plan.rounds} rounds",
        flush=True,
    )
    raw_rates, verifies = [], []
    for _ in range(plan.rounds):
        raw_rates.append(credentials_bench.raw_argon2(plan.seconds, workers, "verify").rps)
        verifies.append(_log(loads.rest(loads.http, "verify", "service-rest", logins_file)()))
        time.sleep(1)  # verifications still queued in the service when wrk stops finish first
    print(
        "  in-process argon2id " + " / ".join(f"{r:.1f}" for r in raw_rates) + " verifications/s", flush=True
    )
    beside = _get_beside(loads, "verify", logins_file)
    failed = sum(r.errors for r in verifies + beside["load"])
    if failed:  # a wrong password would be counted and could lock accounts: the figures would be of refusals
        raise RuntimeError(f"{failed} verifications of the right password failed")
    return {
        "import": imported,
        "batches": plan.import_batches,
        "batch_size": plan.import_batch_size,
        "verify": verifies,
        "raw_verify_rates": raw_rates,
        "workers": workers,
        "beside": beside,
    }


def _get_with_watchers(http: str, plan: Plan, ids_file: Path, dsn: str) -> dict[str, list[Run] | int]:
    """Rounds of: GET load alone, then beside idle event watchers, then beside the same watchers while users
    are created at a steady rate (each create's event goes to every watcher), then beside the creates alone."""
    c = plan.level
    print(f"GET p99 with {plan.watchers} event watchers (c={c}), {plan.rounds} rounds", flush=True)
    out: dict[str, Any] = {
        "alone": [],
        "idle": [],
        "writes": [],
        "creates_only": [],
        "created": 0,
        "delivered": 0,
    }

    def get() -> Run:
        return _log(http_load.run(http, "get", c, plan.seconds, ids_file, _tag(), "service-rest"))

    for _ in range(plan.rounds):
        out["alone"].append(get())
        with watchers_bench.Watchers(http, plan.watchers):
            time.sleep(1)
            out["idle"].append(get())
        with watchers_bench.Watchers(http, plan.watchers, plan.watcher_creates_per_second) as writing:
            time.sleep(1)
            out["writes"].append(get())
            out["delivered"] += writing.events
            out["created"] += writing.created
        stack.quiesce(dsn, EVENTS_COUNT)
        # The same creates without watchers: how much of the difference the creates (argon2id) cost by themselves.
        with watchers_bench.Watchers(http, 0, plan.watcher_creates_per_second):
            time.sleep(1)
            out["creates_only"].append(get())
        stack.quiesce(dsn, EVENTS_COUNT)
    return out


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
        fig: dict[str, Any] = {
            "id": f"rest.{name}.c{plan.level}",
            "group": "service",
            "what": what,
            "baseline": "the same GET load with no event watchers",
            "goal": "p99_ratio <= 1.5",
        }
        rounds.compare(fig, watched[key], alone)
        if key == "writes":
            only = rounds.compare({}, watched["creates_only"], alone, ("p99_ms",))
            fig.update(
                users_created=watched["created"],
                events_delivered=watched["delivered"],
                creates_only_p99_ms=only["p99_ms"],
                creates_only_p99_ratio=only["p99_ratio"],
            )
        figures.append(fig)
    return figures


def _beside_figure(
    beside: dict[str, list[Run]], op: str, doing: str, goal: str | None = None
) -> dict[str, Any]:
    """GET while an argon2 load runs (see _get_beside), against the same GET load alone."""
    load = beside["load"]
    fig: dict[str, Any] = {
        "id": f"rest.get_during_{op}.c{load[0].concurrency}",
        "group": "service",
        "what": f"REST get while {load[0].concurrency} clients {doing} (argon2id, production cost)",
        "baseline": f"the same GET load with no {op} load",
        f"{op}_rps": round(rounds.median([r.rps for r in load]), 1),
    }
    if goal:
        fig["goal"] = goal
    return rounds.compare(fig, beside["loaded"], beside["alone"])


def _credential_figures(measured: dict[str, Any]) -> list[dict[str, Any]]:
    imported, verifies, workers = measured["import"], measured["verify"], measured["workers"]
    batch = {
        "id": "rest.batch_create",
        "group": "service",
        "what": (
            f"REST batchCreate, {measured['batches']} calls of {measured['batch_size']} users with bcrypt"
            f" hashes (cost {credentials_bench.BCRYPT_COST}), one call at a time (a round per call)"
        ),
        "tool": "aiohttp client",
        "users": imported["users"],
        "baseline": "raw asyncpg COPY (copy_records_to_table) of the same rows into a table LIKE users",
        "goal": "users_per_s_ratio >= 0.5",
    }
    rounds.summarize(
        batch,
        {"users_per_s": imported["users_per_s"]},
        {"users_per_s": imported["baseline_users_per_s"]},
        ratio_keys={"users_per_s": "users_per_s_ratio"},
    )
    verify: dict[str, Any] = {
        "id": f"rest.verify_password.c{verifies[0].concurrency}",
        "group": "service",
        "what": f"REST verifyPassword, {verifies[0].concurrency} concurrent, distinct seeded users, right password",
        "tool": "wrk",
        "errors": sum(r.errors for r in verifies),
        "baseline": (
            f"argon2-cffi PasswordHasher.verify at the service's costs in a ThreadPoolExecutor of {workers}"
            " threads (PASSWORD_HASH_WORKERS) at the hashing threads' priority (PASSWORD_HASH_NICE), in the bench"
            " process, right before each round's load"
        ),
        "goal": "rps_ratio >= 0.9",
    }
    rounds.summarize(verify, {"rps": [r.rps for r in verifies]}, {"rps": measured["raw_verify_rates"]})
    rounds.summarize(verify, {m: [getattr(r, m) for r in verifies] for m in ("p50_ms", "p99_ms")})
    return [batch, verify, _beside_figure(measured["beside"], "verify", "verify passwords")]


def _against_get(runs: dict[str, list[Run]], protocol: str, op: str, c: int) -> dict[str, Any]:
    """A page of 50 (list or prefix search) against a get by id of the same protocol in the same rounds."""
    what = "email-prefix search" if op == "search" else "list, country filter"
    fig: dict[str, Any] = {
        "id": f"{protocol}.{op}.c{c}",
        "group": "service",
        "what": f"{LABEL[protocol]} {what}, page of 50, {c} concurrent",
        "baseline": f"{LABEL[protocol]} get by id, same rounds",
        "goal": SEARCH_GOAL if op == "search" else LIST_GOAL,
    }
    return rounds.compare(fig, runs[f"{protocol}.{op}"], runs[f"{protocol}.get"])


def _authenticated_vs_ceiling(runs: dict[str, list[Run]], c: int) -> dict[str, Any]:
    """REST get with a ServiceAccount token (TokenReview and SubjectAccessReview verdicts cached: every request
    of a run but the first is a cache hit) against the composed ceiling."""
    return rounds.compare(
        {
            "id": f"rest.get_authenticated.c{c}",
            "group": "service",
            "what": f"REST get by id with a ServiceAccount token (cache hit), {c} concurrent",
            "baseline": f"composed ceiling: a bare aiohttp handler running the store's get on a pool of {POOL_SIZE}",
            "goal": "rps_ratio >= 0.8",
        },
        runs["rest.get_authenticated"],
        runs["ceiling.rest.get"],
    )


def _authenticated_figures(runs: dict[str, list[Run]], c: int) -> list[dict[str, Any]]:
    """The authenticated REST get against the composed ceiling, the same get unauthenticated, and the peer's own
    authenticated read."""
    authenticated = runs["rest.get_authenticated"]
    what = f"REST get by id with a ServiceAccount token (cache hit), {c} concurrent"
    return [
        _authenticated_vs_ceiling(runs, c),
        rounds.compare(
            {
                "id": f"rest.get_authenticated_vs_unauthenticated.c{c}",
                "group": "service",
                "what": what + ", against the same get unauthenticated",
                "baseline": "the same service with AUTH_MODE=none, same rounds",
                "goal": "rps_ratio >= 0.9",
            },
            authenticated,
            runs["rest.get"],
        ),
        rounds.compare(
            {
                "id": f"rest.get_authenticated_vs_peer.c{c}",
                "group": "service",
                "what": what + ", against the peer's authenticated admin read",
                "baseline": "the peer's GET /users/{id} (fastapi-users' users router) as a superuser with its JWT"
                " strategy",
                "reported": "rps_ratio",  # a reference row: the Go peer (Kratos) carries the goals
            },
            authenticated,
            runs["peer.admin_get"],
        ),
    ]


def _kratos_figures(runs: dict[str, list[Run]], c: int) -> list[dict[str, Any]]:
    """The service against the Go peer (Ory Kratos's admin API) in the same rounds, and its create against
    argon2id alone on the service's hash threads."""
    peer = "Ory Kratos (Go), its admin API (no authentication of its own), same users, same PostgreSQL"
    return [
        rounds.compare(
            {
                "id": f"rest.get_authenticated_vs_kratos.c{c}",
                "group": "service",
                "what": f"REST get by id with a ServiceAccount token (cache hit), {c} concurrent, against Kratos",
                "baseline": f"{peer}: GET /admin/identities/{{id}}",
                "goal": "rps_ratio >= 2",
            },
            runs["rest.get_authenticated"],
            runs["kratos.get"],
        ),
        rounds.compare(
            {
                "id": f"rest.list_vs_kratos.c{c}",
                "group": "service",
                "what": f"REST list, country filter, page of 50, {c} concurrent, against Kratos",
                "baseline": f"{peer}: GET /admin/identities?page_size=50 (no filter: it has none on traits)",
                "goal": "rps_ratio >= 2",
            },
            runs["rest.list"],
            runs["kratos.list"],
        ),
        rounds.compare(
            {
                "id": f"rest.create_vs_kratos.c{c}",
                "group": "service",
                "what": f"REST create with a password, {c} concurrent, against Kratos (both argon2id m=19 MiB t=2"
                " p=1: the service with argon2-cffi on its hash threads, Kratos with golang.org/x/crypto/argon2"
                " in each request's goroutine)",
                "baseline": f"{peer}: POST /admin/identities with a password",
                "reported": "rps_ratio",  # no goal: both are bound by the hash (rest.create_vs_argon2 is)
            },
            runs["rest.create"],
            runs["kratos.create"],
        ),
        rounds.compare(
            {
                "id": f"rest.create_vs_argon2.c{c}",
                "group": "service",
                "what": f"REST create with a password, {c} concurrent, against argon2id alone",
                "baseline": "argon2-cffi PasswordHasher.hash at the service's costs in a ThreadPoolExecutor of"
                " PASSWORD_HASH_WORKERS threads at the hashing threads' priority (PASSWORD_HASH_NICE), in the bench"
                " process, in the same rounds",
                "goal": "rps_ratio >= 0.9",
            },
            runs["rest.create"],
            runs["argon2.hash"],
            ("rps",),
        ),
    ]


def _database(fig: dict[str, Any], runs: list[Run], base: list[Run]) -> dict[str, Any]:
    """Add the raw-asyncpg comparison (the database limit) of the same rounds to `fig`."""
    db = rounds.compare({}, runs, base, ("rps",))
    fig.update(database_rps=db["baseline_rps"], database_rps_ratio=db["rps_ratio"])
    fig["spread"]["database_rps_ratio"] = db["spread"]["rps_ratio"]
    return fig


def _figures(
    runs: dict[str, list[Run]],
    under: dict[str, list[Run]],
    watch: list[list[float]],
    notify: list[list[float]],
    plan: Plan,
) -> list[dict[str, Any]]:
    c = plan.level
    figures: list[dict[str, Any]] = []
    for protocol, framework in (("rest", "aiohttp"), ("grpc", "grpc.aio")):
        fig: dict[str, Any] = {
            "id": f"{protocol}.get.c{c}",
            "group": "service",
            "what": f"{LABEL[protocol]} get by id, {c} concurrent",
            "baseline": f"composed ceiling: a bare {framework} handler running the store's get on a pool of"
            f" {POOL_SIZE}",
        }
        if protocol == "grpc":
            fig["goal"] = "rps_ratio >= 0.8"
        rounds.compare(fig, runs[f"{protocol}.get"], runs[f"ceiling.{protocol}.get"])
        figures.append(_database(fig, runs[f"{protocol}.get"], runs["asyncpg.get"]))
    figures.append(
        rounds.compare(
            {
                "id": f"rest.get_vs_peer.c{c}",
                "group": "service",
                "what": f"REST get by id against the peer's, unauthenticated, {c} concurrent",
                "baseline": "the peer: FastAPI + fastapi-users (SQLAlchemy, asyncpg) under uvicorn (uvloop,"
                " httptools), one worker, same rows",
                "reported": "rps_ratio",  # a reference row: the Go peer (Kratos) carries the goals
            },
            runs["rest.get"],
            runs["peer.get"],
        )
    )
    figures += _authenticated_figures(runs, c)
    for protocol in ("rest", "grpc"):
        figures.append(_against_get(runs, protocol, "list", c))
        figures[-1] = _database(figures[-1], runs[f"{protocol}.list"], runs["asyncpg.list"])
        figures.append(_against_get(runs, protocol, "search", c))
        for op in ("create", "patch"):
            figures.append(
                rounds.compare(
                    {
                        "id": f"{protocol}.{op}.c{c}",
                        "group": "service",
                        "what": f"{LABEL[protocol]} {op}, {c} concurrent",
                        "baseline": f"the same SQL through raw asyncpg, pool {POOL_SIZE}, {c} workers",
                    },
                    runs[f"{protocol}.{op}"],
                    runs[f"asyncpg.{op}"],
                )
            )
    figures.append(_beside_figure(under, "create", "create users", BESIDE_GOAL))
    ev: dict[str, Any] = {
        "id": "events.commit_to_watch",
        "group": "service",
        "what": f"event latency, commit -> WatchUserEvents consumer ({plan.rounds} rounds of {plan.events})",
        "tool": "grpc.aio client",
        "n": sum(len(w) for w in watch),
        "baseline": "commit -> raw asyncpg LISTEN on the outbox channel (PostgreSQL NOTIFY alone)",
    }
    figures.append(
        rounds.summarize(
            ev,
            {f"p{p}_ms": [percentile(w, p) * 1000 for w in watch] for p in (50, 99)},
            {f"p{p}_ms": [percentile(n, p) * 1000 for n in notify] for p in (50, 99)},
        )
    )
    return figures
