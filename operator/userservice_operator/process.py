"""One operator process: the API client, the HTTP endpoints, leader election, then kopf and the reconcile workers
while this replica holds the Lease and is live; any failure ends the process (after the Lease is released) for
Kubernetes to start again."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

import kopf
from kopf._cogs.structs.references import Insights  # not exported by kopf 1.45; spawn_tasks takes it
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from userservice_operator import handlers, namespaces
from userservice_operator.kube import Kube
from userservice_operator.leader import LeaderElector, LeaseConfig
from userservice_operator.liveness import Liveness
from userservice_operator.metrics import OperatorMetrics
from userservice_operator.runtime import Controller, ControllerConfig
from userservice_operator.server import serve_http

log = logging.getLogger("userservice_operator")
KOPF_STOP_SECONDS = 10.0  # how long the workers, and kopf on a requested stop, may take to stop
RELEASE_SECONDS = 10.0  # how long giving up the Lease may take (the API server may be unreachable)


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
    helpers = [failing, stopping]
    if not args.all_namespaces:
        helpers.append(
            asyncio.create_task(
                namespaces.keep_listing(kube, insights, args.namespace, args.resync_seconds),
                name="namespace listing",
            )
        )
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
    for task in (*kopf_tasks, keep, *helpers):
        task.cancel()
    # The workers are what writes (kopf does not): stopped before the Lease is released. A failed kopf is not
    # waited for at all (its tasks may never finish; the process exits without them), a stopping one within
    # the bound.
    await asyncio.wait({asyncio.create_task(controller.stop())}, timeout=KOPF_STOP_SECONDS)
    if code == 0:
        await asyncio.wait(kopf_tasks, timeout=KOPF_STOP_SECONDS)
    return code
