"""`userservice-operator`: leader election, then kopf watches feeding the reconcile workers.

    userservice-operator [--namespace NS ...| --all-namespaces] [--kubeconfig PATH]
                         [--health-port 8081] [--metrics-port 9090] [--lease-namespace NS]

Every replica serves /healthz (liveness) and /metrics; only the holder of the Lease runs kopf and
reconciles. Logs are JSON lines on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import kopf
from aiohttp import web
from kopf._cogs.structs.references import Insights  # not exported by kopf 1.45; spawn_tasks takes it
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from userservice_operator import handlers
from userservice_operator.children.promql import RUNBOOKS
from userservice_operator.kube import Kube
from userservice_operator.leader import LeaderElector, LeaseConfig
from userservice_operator.liveness import Liveness
from userservice_operator.metrics import OperatorMetrics
from userservice_operator.runtime import Controller, ControllerConfig

log = logging.getLogger("userservice_operator")
KOPF_STOP_SECONDS = 10.0  # how long the workers, and kopf on a requested stop, may take to stop
RELEASE_SECONDS = 10.0  # how long giving up the Lease may take (the API server may be unreachable)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="userservice-operator", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="namespace to watch (repeatable)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch all namespaces (the default without -n)"
    )
    p.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig (default: in-cluster)"
    )
    p.add_argument("--bind-address", default=os.environ.get("OPERATOR_BIND_ADDRESS", "0.0.0.0"))  # noqa: S104
    p.add_argument("--health-port", type=int, default=int(os.environ.get("OPERATOR_HEALTH_PORT", "8081")))
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("OPERATOR_METRICS_PORT", "9090")))
    p.add_argument("--lease-name", default=os.environ.get("OPERATOR_LEASE_NAME", "userservice-operator"))
    p.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE"),
        help="default: POD_NAMESPACE, first -n, or 'default'",
    )
    p.add_argument(
        "--identity", default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    )
    p.add_argument("--lease-duration", type=float, default=_env_float("OPERATOR_LEASE_DURATION", 15))
    p.add_argument("--renew-deadline", type=float, default=_env_float("OPERATOR_RENEW_DEADLINE", 10))
    p.add_argument("--retry-period", type=float, default=_env_float("OPERATOR_RETRY_PERIOD", 2))
    p.add_argument("--resync-seconds", type=float, default=_env_float("OPERATOR_RESYNC_SECONDS", 300))
    p.add_argument("--crd-poll-seconds", type=float, default=_env_float("OPERATOR_CRD_POLL_SECONDS", 10))
    p.add_argument("--backoff-max", type=float, default=_env_float("OPERATOR_BACKOFF_MAX", 60))
    p.add_argument(
        "--stall-seconds",
        type=float,
        default=_env_float("OPERATOR_STALL_SECONDS", 300),
        help="liveness fails when work waits this long without a reconcile pass completing",
    )
    p.add_argument("--api-threads", type=int, default=int(os.environ.get("OPERATOR_API_THREADS", "16")))
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"))
    p.add_argument(
        "--runbook-base-url",
        default=os.environ.get("OPERATOR_RUNBOOK_BASE_URL", RUNBOOKS),
        help="where docs/runbooks.md is published; each alert's runbook_url is this plus #<alert>",
    )
    p.add_argument(
        "--prometheus-url",
        default=os.environ.get("OPERATOR_PROMETHEUS_URL", ""),
        help="the Prometheus whose recording rules include spec.slo's; the status shows each objective's "
        "error budget left from it (empty: the budgets are left out)",
    )
    args = p.parse_args(argv)
    if not args.namespace:
        args.all_namespaces = True
    if not args.lease_namespace:
        args.lease_namespace = args.namespace[0] if args.namespace else "default"
    return args


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level"},
            # kopf attaches its settings and object references to records: not for the log line.
            reserved_attrs=[*RESERVED_ATTRS, "settings", "k8s_skip", "k8s_ref"],
            json_default=str,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # kopf reports every handled watch event at INFO; our own lines say what was done.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, root.level))


def load_client(
    kubeconfig: str | None, connections: int
) -> tuple[k8s_client.ApiClient, kopf.ConnectionInfo | None]:
    """An ApiClient keeping up to `connections` connections open, and the same credentials for kopf (None:
    in-cluster service account)."""
    cfg = k8s_client.Configuration()
    # One per API thread: urllib3's default (5 per core) made the threads past it open a new TLS connection
    # for each request and throw it away after.
    cfg.connection_pool_maxsize = connections
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
        keys = cfg.api_key or {}
        bearer = keys.get("BearerToken") or keys.get("authorization") or ""
        token = bearer.removeprefix("Bearer ").strip() or None
        conn = kopf.ConnectionInfo(
            server=cfg.host,
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            token=token,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
        )
        return k8s_client.ApiClient(cfg), conn
    k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return k8s_client.ApiClient(cfg), None


async def serve_http(
    host: str,
    health_port: int,
    metrics_port: int,
    metrics: OperatorMetrics,
    problem: Callable[[], str | None],
) -> list[web.AppRunner]:
    async def healthz(_: web.Request) -> web.Response:
        why = problem()
        return web.Response(status=503 if why else 200, text=f"unhealthy: {why}\n" if why else "ok\n")

    async def metrics_view(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    runners = []
    apps: dict[int, web.Application] = {}
    for port, path, view in ((health_port, "/healthz", healthz), (metrics_port, "/metrics", metrics_view)):
        app = apps.setdefault(port, web.Application())
        app.router.add_get(path, view)
    for port, app in apps.items():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        runners.append(runner)
    return runners


def on_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run(args: argparse.Namespace) -> int:
    """0 after a requested stop; 1 when leadership was lost or this replica stopped being live."""
    metrics = OperatorMetrics()
    api_client, connection = load_client(args.kubeconfig, args.api_threads)
    kube = Kube(api_client, metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # API calls of the reconcile path run in threads (the kubernetes client is synchronous).
    loop.set_default_executor(ThreadPoolExecutor(max_workers=args.api_threads, thread_name_prefix="kube"))
    on_stop_signals(stop)
    liveness = Liveness(stall_seconds=args.stall_seconds)
    runners = await serve_http(
        args.bind_address, args.health_port, args.metrics_port, metrics, liveness.problem
    )
    elector = LeaderElector(
        # A renewal that waits out the reconcile path's 30 s read timeout on a dead connection would miss the
        # renew deadline: each attempt gets half of it, so another attempt (on another connection: a timed-out
        # one is dropped) fits before it.
        Kube(api_client, metrics, (args.retry_period, args.renew_deadline / 2)),
        LeaseConfig(
            name=args.lease_name,
            namespace=args.lease_namespace,
            identity=args.identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        ),
    )
    log.info("starting", extra={"identity": args.identity, "namespaces": args.namespace or "*"})
    code = 0
    try:
        acquire = asyncio.create_task(elector.acquire(), name="lease")
        liveness.lease_loop = acquire
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            acquire.cancel()
            return 0
        liveness.lease_loop = None  # until lead() starts renewing
        metrics.leader.set(1)
        code = await lead(args, kube, metrics, connection, elector, stop, liveness)
    finally:
        metrics.leader.set(0)
        # Released on every exit, so a standby takes over at once; the API server may be what failed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(elector.release(), RELEASE_SECONDS)
        for runner in runners:
            await runner.cleanup()
    return code


async def lead(
    args: argparse.Namespace,
    kube: Kube,
    metrics: OperatorMetrics,
    connection: kopf.ConnectionInfo | None,
    elector: LeaderElector,
    stop: asyncio.Event,
    liveness: Liveness,
) -> int:
    """Run kopf while holding the Lease and live. 0 on a requested stop; 1 when leadership was lost, kopf
    stopped, or a liveness check failed: the process then exits and Kubernetes starts it again. kopf is never
    restarted in the same process: a kopf that failed may leave tasks behind that refuse to stop."""
    controller = Controller(
        kube,
        metrics,
        ControllerConfig(
            resync_seconds=args.resync_seconds,
            crd_poll_seconds=args.crd_poll_seconds,
            backoff_max=args.backoff_max,
            runbooks=args.runbook_base_url,
            prometheus_url=args.prometheus_url,
            clusterwide=args.all_namespaces,
        ),
    )
    registry = handlers.register(kopf.OperatorRegistry(), connection)
    settings = kopf.OperatorSettings()
    handlers.configure_settings(settings)
    kopf_stop = asyncio.Event()
    insights = Insights()
    kopf_tasks = await kopf.spawn_tasks(
        registry=registry,
        settings=settings,
        insights=insights,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        standalone=True,
        memo=kopf.Memo(controller=controller),
        stop_flag=kopf_stop,
    )
    # spawn_tasks took SIGTERM/SIGINT for kopf: take them back, so that a signal is always a requested stop.
    on_stop_signals(stop)
    keep = asyncio.create_task(elector.keep(controller.acting), name="lease-renewal")
    liveness.lease_loop = keep
    liveness.lead(kopf_tasks, insights, controller.stalled)
    failing = asyncio.create_task(liveness.failed(), name="liveness")
    stopping = asyncio.create_task(stop.wait())
    # kopf's root tasks are awaited here rather than through kopf.run_tasks: when it stops, that cancels every
    # task of the loop it did not see start, this process's own shutdown included.
    await asyncio.wait({*kopf_tasks, keep, failing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 1
    if stopping.done():
        log.info("stopping")
        code = 0
        kopf_stop.set()  # else kopf arms its ultimate exit (handlers.configure_settings)
    elif keep.done():
        log.error("lost leadership; exiting")
    elif failing.done():
        log.error("not live: %s; exiting", failing.result())
    else:
        ended = next(t for t in kopf_tasks if t.done())
        error = None if ended.cancelled() else ended.exception()
        log.error("kopf's %s stopped: %r; exiting", ended.get_name(), error)
    for task in (*kopf_tasks, keep, failing, stopping):
        task.cancel()
    # The workers are what writes (kopf does not): stopped before the Lease is released. A failed kopf is not
    # waited for at all (its tasks may never finish; the process exits without them), a stopping one within
    # the bound.
    await asyncio.wait({asyncio.create_task(controller.stop())}, timeout=KOPF_STOP_SECONDS)
    if code == 0:
        await asyncio.wait(kopf_tasks, timeout=KOPF_STOP_SECONDS)
    return code


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = parse_args(argv)
    setup_logging(args.log_level)
    code = asyncio.new_event_loop().run_until_complete(run(args))
    # Ends the process here, not through the loop's and the interpreter's shutdown: both wait for what is
    # left (a failed kopf's tasks can refuse cancellation; API threads can wait out a 30 s read timeout).
    # The Lease is released and the logs are flushed by then.
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
