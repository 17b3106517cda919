"""The framework limits: a bare aiohttp handler and a bare grpc.aio unary call, each returning a constant
user of the same shape as a real GET answer. `python -m bench.bare http|grpc` prints its port as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from uuid import UUID

import grpc
from aiohttp import web

from userservice import jsoncodec
from userservice.api.grpc import to_proto
from userservice.domain.model import User
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

NOW = datetime(2026, 1, 1, tzinfo=UTC)
USER = User(UUID(int=6), "Ada", "Lovelace", "ada", "ada@example.com", "GB", NOW, NOW, 1)


async def http() -> None:
    body = jsoncodec.dumps(USER.public())

    async def get(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/users/{id}", get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps({"message": "serving", "port": runner.addresses[0][1]}), flush=True)
    await asyncio.Event().wait()


class Constant(pb_grpc.UserServiceServicer):
    def __init__(self) -> None:
        self.user = to_proto(USER)

    async def GetUser(self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        return self.user


async def grpc_server() -> None:
    server = grpc.aio.server()
    pb_grpc.add_UserServiceServicer_to_server(Constant(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"message": "serving", "port": port}), flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(http() if sys.argv[1] == "http" else grpc_server())
