"""New passwords checked against a local server speaking the k-anonymity range protocol: only a 5-character
SHA-1 prefix is sent, breached passwords are refused, and a failing server is handled as configured."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import grpc
import pytest
from aiohttp import web

from tests.support.service import in_process
from tests.support.users import new_user
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc

BREACHED = "breached but long enough"
CLEAN = "never seen in any breach"


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest().upper()


@dataclass
class RangeServer:
    """Knows one breached password; records every request path and header it is sent."""

    url: str = ""
    asked: list[str] = field(default_factory=list)
    padding: list[str | None] = field(default_factory=list)
    mode: str = "ok"  # ok, error or slow

    async def handle(self, request: web.Request) -> web.Response:
        self.asked.append(request.match_info["prefix"])
        self.padding.append(request.headers.get("Add-Padding"))
        if self.mode == "error":
            return web.Response(status=503)
        if self.mode == "slow":
            await asyncio.sleep(5)
        lines = [f"{'0' * 35}:0", f"{'F' * 35}:2"]  # a padding line, and another password's suffix
        if request.match_info["prefix"] == sha1(BREACHED)[:5]:
            lines.append(f"{sha1(BREACHED)[5:]}:42")
        return web.Response(text="\r\n".join(lines))


@pytest.fixture(scope="module")
async def range_server() -> AsyncIterator[RangeServer]:
    server = RangeServer()
    app = web.Application()
    app.router.add_get("/range/{prefix}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/range"
    yield server
    await runner.cleanup()


async def test_breached_passwords_are_refused_and_only_a_prefix_leaves(
    database: str, range_server: RangeServer
) -> None:
    range_server.mode, range_server.asked[:] = "ok", []
    async with (
        in_process(database, breach_check_url=range_server.url) as running,
        aiohttp.ClientSession(base_url=running.http) as http,
        grpc.aio.insecure_channel(running.grpc) as channel,
    ):
        async with http.post("/v1/users", json=new_user(password=BREACHED)) as resp:
            assert resp.status == 400
            problem = await resp.json(content_type=None)
        assert problem["errors"] == [
            {"field": "password", "message": "appears in a known data breach; choose another"}
        ]
        async with http.post("/v1/users", json=new_user(password=CLEAN)) as resp:
            assert resp.status == 201
            user = await resp.json()
        url = f"/v1/users/{user['id']}:changePassword"
        async with http.post(url, json={"current_password": CLEAN, "new_password": BREACHED}) as resp:
            assert resp.status == 400
            assert [e["field"] for e in (await resp.json(content_type=None))["errors"]] == ["new_password"]
        body = {"requests": [{"user": new_user(password=CLEAN + "!")}, {"user": new_user(password=BREACHED)}]}
        async with http.post("/v1/users:batchCreate", json=body) as resp:
            assert resp.status == 400
            assert [e["field"] for e in (await resp.json(content_type=None))["errors"]] == [
                "requests[1].user.password"
            ]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.UserServiceStub(channel).UpdateUser(
                pb.UpdateUserRequest(user=pb.User(id=user["id"], password=BREACHED))
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        async with http.get(f"{running.management}/metrics") as resp:
            metrics = await resp.text()
    assert 'userservice_breach_checks_total{outcome="breached"} 4.0' in metrics
    assert range_server.asked and all(len(prefix) == 5 for prefix in range_server.asked)
    assert set(range_server.asked) == {sha1(BREACHED)[:5], sha1(CLEAN)[:5], sha1(CLEAN + "!")[:5]}
    assert set(range_server.padding) == {"true"}


@pytest.mark.parametrize("mode", ["error", "slow"])
async def test_an_unanswered_check_fails_open_or_closed_as_configured(
    database: str, range_server: RangeServer, mode: str
) -> None:
    range_server.mode = mode
    checks = {"breach_check_url": range_server.url, "breach_check_timeout": 0.3}
    async with (
        in_process(database, **checks) as fail_open,
        in_process(database, **checks, breach_check_fail_open=False) as fail_closed,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(f"{fail_open.http}/v1/users", json=new_user(password=BREACHED)) as resp:
            assert resp.status == 201  # could not be checked: accepted
        async with http.post(f"{fail_closed.http}/v1/users", json=new_user(password=CLEAN)) as resp:
            assert resp.status == 503
            assert (await resp.json(content_type=None))["type"].endswith("/dependency-unavailable")
        async with grpc.aio.insecure_channel(fail_closed.grpc) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.UserServiceStub(channel).CreateUser(
                    pb.CreateUserRequest(user=pb.User(**new_user(password=CLEAN)))  # type: ignore[arg-type]
                )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
