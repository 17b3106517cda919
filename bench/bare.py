"""The composed ceilings: the least one process can do per get by id. A bare aiohttp handler and a bare
grpc.aio unary call, each running the service's own get-by-id SQL (the store's `get`, not a copy) on a pool of
the service's size and returning the row as JSON (REST) or the User message (gRPC); no middleware, validation,
logging or metrics. `python -m bench.bare http|grpc DSN POOL_SIZE` prints its port as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from uuid import UUID

import grpc
from aiohttp import web

from userservice import jsoncodec
from userservice.api.grpc import to_proto
from userservice.store import users as store
from userservice.store.db import create_pool
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


async def http(dsn: str, pool_size: int) -> None:
    pool = await create_pool(dsn, pool_size, 10)

    async def get(request: web.Request) -> web.Response:
        user = await store.get(pool, UUID(request.match_info["id"]))
        if user is None:
            raise web.HTTPNotFound()
        return web.Response(body=jsoncodec.dumps(user.public()), content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/users/{id}", get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps({"message": "serving", "port": runner.addresses[0][1]}), flush=True)
    await asyncio.Event().wait()


class Ceiling(pb_grpc.UserServiceServicer):
    def __init__(self, pool: object) -> None:
        self.pool = pool

    async def GetUser(self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        user = await store.get(self.pool, UUID(request.id))
        if user is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
        return to_proto(user)


async def grpc_server(dsn: str, pool_size: int) -> None:
    pool = await create_pool(dsn, pool_size, 10)
    server = grpc.aio.server()
    pb_grpc.add_UserServiceServicer_to_server(Ceiling(pool), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"message": "serving", "port": port}), flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    kind, dsn, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(http(dsn, size) if kind == "http" else grpc_server(dsn, size))
