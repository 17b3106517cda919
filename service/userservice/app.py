"""Wiring and lifecycle: build every part, serve REST and gRPC, shut down gracefully on SIGTERM/SIGINT.

Shutdown order: readiness fails (and gRPC health says NOT_SERVING) at once; after SHUTDOWN_DELAY_SECONDS the
listeners close; in-flight requests get SHUTDOWN_GRACE_SECONDS to finish while event streams end cleanly
(clients resume from their last cursor elsewhere); then the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from userservice.access.gate import access_for
from userservice.api import consistency
from userservice.api import grpc as grpc_api
from userservice.api import http as http_api
from userservice.api.connections import ConnectionLimits, GuardedRunner
from userservice.api.scim import routes as scim_api
from userservice.clients.breach import BreachCheck
from userservice.clients.kubernetes import KubeApi, endpoint
from userservice.config import Config, ConfigError, read_urls, subscriptions_namespace
from userservice.core.batch import BatchCore
from userservice.core.credentials import Credentials, Throttling
from userservice.core.delivery import Deliveries
from userservice.core.delivery import Settings as DeliverySettings
from userservice.core.feed import EventFeed
from userservice.core.health import Health
from userservice.core.maintenance import run as run_maintenance
from userservice.core.users import UserCore
from userservice.domain.subscriptions import parse_networks
from userservice.domain.throttle import LockoutPolicy
from userservice.logs import AccessSampling
from userservice.metrics import Metrics
from userservice.passwords.hashing import Passwords
from userservice.store.db import FairPool, create_pool
from userservice.store.migrator import migrate
from userservice.store.replicas import CONNECT_TIMEOUT_SECONDS, ReadRouter, Replica
from userservice.tls import RotatingCertificate
from userservice.v1 import user_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

HEALTH_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Bound:
    """The ports actually bound (differs from the config when it asked for port 0)."""

    http_port: int
    grpc_port: int
    management_port: int


async def _track_grpc_health(service: Health, servicer: health.aio.HealthServicer) -> None:
    while True:
        reason = await service.check_ready()
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING if reason else health_pb2.HealthCheckResponse.SERVING
        )
        for name in ("", grpc_api.SERVICE_NAME):
            await servicer.set(name, status)
        await asyncio.sleep(HEALTH_POLL_SECONDS)


def _deliveries(config: Config, pool: asyncpg.Pool, feed: EventFeed, metrics: Metrics) -> Deliveries | None:
    """Push delivery of the UserService named by SUBSCRIPTIONS_USERSERVICE; None when unset."""
    if not config.subscriptions_user_service:
        return None
    found = endpoint(config.kubeconfig)
    namespace = subscriptions_namespace(config)
    if found is None or not namespace:
        raise ConfigError(
            "SUBSCRIPTIONS_USERSERVICE needs the Kubernetes API (in a pod, or KUBECONFIG) and a namespace"
            " (in a pod, or SUBSCRIPTIONS_NAMESPACE / AUTH_NAMESPACE)"
        )
    return Deliveries(
        pool,
        KubeApi(found),
        feed,
        metrics,
        DeliverySettings(
            namespace=namespace,
            user_service=config.subscriptions_user_service,
            poll=config.subscription_poll,
            lease=config.subscription_lease,
            status_interval=config.subscription_status_interval,
            secret_reread=config.subscription_secret_reread,
            cluster_networks=parse_networks(config.subscription_cluster_networks),
            source=config.event_source,
        ),
    )


async def serve(
    config: Config,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Bound], Awaitable[None] | None] | None = None,
) -> None:
    """Runs until `stop` is set or SIGTERM/SIGINT arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    config = config.for_serving()
    access = access_for(config)  # a configuration error surfaces before anything starts
    if config.auth_mode == "none":
        log.warning(
            "AUTH_MODE=none: NO AUTHENTICATION OR AUTHORIZATION; every caller may do everything. "
            "Allowed only because every listener is on a loopback address. Never use this in a cluster."
        )
    certificate = (
        RotatingCertificate(config.tls_cert_file, config.tls_key_file) if config.tls_cert_file else None
    )
    server_tls = None if certificate is None else certificate.context
    metrics = Metrics()
    pool = await create_pool(config.database_url, config.db_pool_max, config.db_command_timeout)
    metrics.watch_pool(lambda: (pool.get_size(), pool.get_idle_size(), pool.get_max_size()))
    if config.migrate_on_start:
        async with pool.acquire() as conn:
            await migrate(conn)
            await conn.reset()  # the pool does not reset on release; undo the migration's session lock
    passwords = Passwords(
        config.argon2_time_cost,
        config.argon2_memory_kib,
        config.argon2_parallelism,
        config.hash_workers,
        observe=metrics.password_hash_latency.observe,
        nice=config.hash_nice,
    )
    breach = BreachCheck(
        config.breach_check_url, config.breach_check_timeout, config.breach_check_fail_open, metrics
    )
    # One first-come, first-served gate for every use case: separate gates in front of one pool would each be
    # fair only among their own callers. Consistency tokens (a WAL position read after each write, a middleware
    # and an interceptor per request) only matter where a replica may serve a read.
    replica_urls = read_urls(config.database_read_url)
    tokens = bool(replica_urls)
    db = FairPool(pool, notes_writes=tokens)
    replicas = [
        Replica(
            index,
            await create_pool(
                url, config.db_read_pool_max, config.db_command_timeout, CONNECT_TIMEOUT_SECONDS
            ),
        )
        for index, url in enumerate(replica_urls)
    ]
    reads = ReadRouter(
        db,
        replicas,
        metrics,
        token_wait=config.read_token_wait,
        untokened_to_replica=config.reads_without_token == "replica",  # noqa: S105 # a mode, not a secret
    )
    core = UserCore(
        db, passwords, metrics, config.idempotency_ttl, config.delete_retention, breach=breach, reads=reads
    )
    credentials = Credentials(
        db,
        passwords,
        metrics,
        breach,
        Throttling(
            LockoutPolicy(config.lockout_threshold, config.lockout_base, config.lockout_max),
            LockoutPolicy(config.caller_lockout_threshold, config.lockout_base, config.lockout_max),
            config.failure_window,
        ),
    )
    service_health = Health(pool)
    feed = EventFeed(
        config.database_url,
        pool,
        metrics,
        config.event_poll_interval,
        config.event_watchers_max,
        config.event_watcher_queue,
        config.event_write_timeout,
        service_health.stopping,
    )
    await feed.start()

    batch = BatchCore(db, passwords, metrics, config.idempotency_ttl, breach)
    app = http_api.build_app(
        access,
        core,
        credentials,
        batch,
        feed,
        metrics,
        config.event_source,
        config.max_body_bytes,
        config.batch_max_body_bytes,
        consistency_tokens=tokens,
        access_log=AccessSampling(config.access_log_sample, config.access_log_slow_seconds),
    )
    scim_api.attach(app, config.max_body_bytes)
    limits = ConnectionLimits(
        config.http_header_timeout, config.http_idle_timeout, config.http_max_connections
    )
    runner = GuardedRunner(app, limits, metrics, shutdown_timeout=config.shutdown_grace, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http_host, config.http_port, ssl_context=server_tls)
    await site.start()
    management = web.AppRunner(
        http_api.build_management_app(service_health, metrics),
        shutdown_timeout=config.shutdown_grace,
        access_log=None,
    )
    await management.setup()
    await web.TCPSite(
        management, config.management_host, config.management_port, ssl_context=server_tls
    ).start()

    # The access check first: an unauthenticated caller learns nothing, not even whether its request decodes.
    server = grpc.aio.server(
        interceptors=[
            grpc_api.AccessGuard(access, metrics),
            grpc_api.RequestGuard(),
            *([consistency.GrpcTokens(grpc_api.SERVICE_NAME)] if tokens else []),
        ]
    )
    pb_grpc.add_UserServiceServicer_to_server(  # type: ignore[no-untyped-call] # generated code is untyped
        grpc_api.UserServiceServicer(core, credentials, batch, feed, metrics, config.event_source),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            grpc_api.SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    grpc_address = f"{config.grpc_host}:{config.grpc_port}"
    if certificate is None:
        grpc_port = server.add_insecure_port(grpc_address)
    else:
        grpc_port = server.add_secure_port(grpc_address, certificate.grpc_credentials())
    await server.start()

    background = [
        asyncio.create_task(_track_grpc_health(service_health, health_servicer), name="grpc-health"),
        asyncio.create_task(
            run_maintenance(pool, config.event_retention, config.maintenance_interval, config.failure_window),
            name="maintenance",
        ),
    ]
    deliveries = _deliveries(config, pool, feed, metrics)
    if deliveries is not None:
        background.append(asyncio.create_task(deliveries.run(), name="deliveries"))
    if replicas:
        background.append(
            asyncio.create_task(
                reads.watch(pool, config.replica_probe_interval, config.replica_max_lag), name="replicas"
            )
        )
    bound = Bound(runner.addresses[0][1], grpc_port, management.addresses[0][1])
    log.info(
        "serving",
        extra={
            "http_port": bound.http_port,
            "grpc_port": bound.grpc_port,
            "management_port": bound.management_port,
            "tls": certificate is not None,
            "auth_mode": config.auth_mode,
        },
    )
    if on_ready is not None:
        result = on_ready(bound)
        if result is not None:
            await result

    await stop.wait()
    log.info(
        "shutting down",
        extra={"delay_seconds": config.shutdown_delay, "grace_seconds": config.shutdown_grace},
    )
    service_health.stopping.set()
    metrics.ready.set(0)
    await health_servicer.enter_graceful_shutdown()
    await asyncio.sleep(config.shutdown_delay)
    await asyncio.gather(runner.cleanup(), server.stop(config.shutdown_grace))
    await management.cleanup()
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await feed.close()
    if deliveries is not None:
        await deliveries.close()
    await asyncio.gather(
        asyncio.wait_for(pool.close(), timeout=config.shutdown_grace), reads.close(config.shutdown_grace)
    )
    passwords.close()
    await breach.close()
    await access.close()
    log.info("stopped")
