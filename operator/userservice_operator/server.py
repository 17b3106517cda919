"""Every replica's HTTP endpoints: /healthz (liveness, see liveness.py) and /metrics."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from userservice_operator.metrics import OperatorMetrics


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
