"""Database sessions terminated under load (pg_terminate_backend, as a failover or an operator does): every call is
answered, at worst with 503 / UNAVAILABLE, never a 500 / INTERNAL, and the service serves normally afterwards."""

from __future__ import annotations

import asyncio
import collections
import time

import aiohttp
import asyncpg
import grpc

from tests.support.service import in_process
from tests.support.users import new_user
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

LOAD_SECONDS = 10.0
CLIENTS = 4  # per transport


async def test_sessions_terminated_under_mixed_load_are_unavailable_never_internal(database: str) -> None:
    async with (
        in_process(database) as service,
        aiohttp.ClientSession(base_url=service.http) as http,
        grpc.aio.insecure_channel(service.grpc) as channel,
    ):
        stub = pb_grpc.UserServiceStub(channel)
        ids = []
        for _ in range(10):
            async with http.post("/v1/users", json=new_user()) as resp:
                ids.append((await resp.json())["id"])
        answers: collections.Counter[str] = collections.Counter()
        end = time.monotonic() + LOAD_SECONDS

        async def rest(n: int) -> None:
            while time.monotonic() < end:
                n += 1
                if n % 3 == 0:
                    request = http.post("/v1/users", json=new_user())
                elif n % 3 == 1:
                    request = http.get(f"/v1/users/{ids[n % len(ids)]}")
                else:
                    request = http.get("/v1/users?page_size=10")
                async with request as resp:
                    answers[f"REST {resp.status}"] += 1

        async def rpc(n: int) -> None:
            while time.monotonic() < end:
                n += 1
                try:
                    if n % 2:
                        await stub.GetUser(pb.GetUserRequest(id=ids[n % len(ids)]))
                    else:
                        await stub.ListUsers(pb.ListUsersRequest(page_size=10))
                    answers["gRPC OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    answers[f"gRPC {exc.code().name}"] += 1

        async def terminate() -> int:
            killed = 0
            conn = await asyncpg.connect(database)
            try:
                while time.monotonic() < end:
                    killed += await conn.fetchval(
                        """SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                           WHERE application_name = 'userservice' AND pid <> pg_backend_pid()"""
                    )
                    await asyncio.sleep(0.2)
            finally:
                await conn.close()
            return killed

        *_, killed = await asyncio.gather(
            *(rest(n) for n in range(CLIENTS)), *(rpc(n) for n in range(CLIENTS)), terminate()
        )
        assert killed > 20, killed
        assert set(answers) <= {"REST 200", "REST 201", "REST 503", "gRPC OK", "gRPC UNAVAILABLE"}, answers
        assert answers["REST 200"] + answers["REST 201"] + answers["gRPC OK"] > answers.total() / 2, answers
        async with http.get(f"/v1/users/{ids[0]}") as resp:
            assert resp.status == 200
