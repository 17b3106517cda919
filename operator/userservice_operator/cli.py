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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from aiohttp import web
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from userservice_operator import handlers
from userservice_operator.children.promql import RUNBOOKS
from userservice_operator.kube import Kube
from userservice_operator.leader import LeaderElector, LeaseConfig
from userservice_operator.metrics import OperatorMetrics
from userservice_operator.runtime import Controller, ControllerConfig, backoff

log = logging.getLogger("userservice_operator")


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
    host: str, health_port: int, metrics_port: int, metrics: OperatorMetrics, healthy: Any
) -> list[web.AppRunner]:
    async def healthz(_: web.Request) -> web.Response:
        ok = bool(healthy())
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "unhealthy\n")

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


async def run(args: argparse.Namespace) -> int:
    metrics = OperatorMetrics()
    api_client, connection = load_client(args.kubeconfig, args.api_threads)
    kube = Kube(api_client, metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # API calls of the reconcile path run in threads (the kubernetes client is synchronous).
    loop.set_default_executor(ThreadPoolExecutor(max_workers=args.api_threads, thread_name_prefix="kube"))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    state: dict[str, asyncio.Task[Any] | None] = {"operator": None}

    def healthy() -> bool:
        task = state["operator"]
        return task is None or not task.done()

    runners = await serve_http(args.bind_address, args.health_port, args.metrics_port, metrics, healthy)
    elector = LeaderElector(
        kube,
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
        acquire = asyncio.create_task(elector.acquire())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            acquire.cancel()
            return 0
        metrics.leader.set(1)
        code = await lead(args, kube, metrics, connection, elector, stopping, state)
    finally:
        metrics.leader.set(0)
        await elector.release() if code == 0 else None
        for runner in runners:
            await runner.cleanup()
        await asyncio.to_thread(api_client.close)
    return code


async def lead(
    args: argparse.Namespace,
    kube: Kube,
    metrics: OperatorMetrics,
    connection: kopf.ConnectionInfo | None,
    elector: LeaderElector,
    stopping: asyncio.Task[Any],
    state: dict[str, asyncio.Task[Any] | None],
) -> int:
    """Run kopf while holding the Lease. 0 on a requested stop, 1 when leadership or kopf was lost."""
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

    async def run_kopf() -> None:
        """kopf until asked to stop. A watch that fails (e.g. 404 while a CRD is being removed, before kopf
        notices the removal) ends kopf as a whole: start it again with backoff rather than lose the lease."""
        failures = 0
        while True:
            try:
                await kopf.operator(
                    registry=registry,
                    settings=settings,
                    clusterwide=args.all_namespaces,
                    namespaces=args.namespace,
                    standalone=True,
                    memo=kopf.Memo(controller=controller),
                    stop_flag=kopf_stop,
                )
                return
            except Exception as exc:
                if kopf_stop.is_set():
                    return
                failures += 1
                delay = backoff(failures, 1.0, args.backoff_max)
                log.error("kopf stopped unexpectedly: %r; restarting it in %.0fs", exc, delay)
                await asyncio.sleep(delay)

    operator = asyncio.create_task(run_kopf(), name="kopf")
    state["operator"] = operator
    keep = asyncio.create_task(elector.keep(), name="lease")
    await asyncio.wait({operator, keep, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if keep.done() and not stopping.done():
        log.error("lost leadership; stopping")
        code = 1
    elif operator.done() and not stopping.done():
        # kopf installs its own SIGTERM/SIGINT handlers: a clean return is a requested stop.
        log.info("kopf stopped; shutting down")
    kopf_stop.set()
    keep.cancel()
    with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
        await asyncio.wait_for(operator, timeout=15)
    await controller.stop()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
