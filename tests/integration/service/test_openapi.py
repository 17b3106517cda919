"""The OpenAPI document matches the served routes, and schemathesis finds no 5xx or undocumented response."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from tests.support.service import RunningService

BIN = Path(sys.executable).parent


async def test_every_route_is_documented_and_nothing_else(http: aiohttp.ClientSession) -> None:
    from userservice.api.http import build_app

    app = build_app(None, None, None, None, "", 1)  # type: ignore[arg-type] # only the route table is read
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    async with http.get("/openapi.json") as resp:
        assert resp.status == 200
        document = await resp.json()
    assert document["openapi"].startswith("3.1")
    documented = {(m, path) for path, item in document["paths"].items() for m in item if m != "parameters"}
    assert served == documented


async def test_schemathesis_finds_no_server_errors(service: RunningService, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "schemathesis"),
        "run",
        f"{service.http}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--exclude-path",
        "/v1/events",  # an endless stream; covered by test_events.py
        "--max-examples",
        os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"),
        "--seed",
        "1",
        "--generation-deterministic",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    text = out.decode()
    assert proc.returncode == 0, text[-6000:]
    assert " passed" in text and "operations" in text.lower(), text[-3000:]
    print(text[-1500:])
