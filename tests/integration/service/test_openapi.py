"""The OpenAPI document matches the served routes, and schemathesis finds no 5xx or undocumented response."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp

from tests.support.schemathesis import run_schemathesis
from tests.support.service import RunningService


async def test_every_route_is_documented_and_nothing_else(http: aiohttp.ClientSession) -> None:
    from userservice.api.http import build_app

    app = build_app(None, None, None, None, None, None, "", 1, 1)  # type: ignore[arg-type] # only the routes are read
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    async with http.get("/openapi.json") as resp:
        assert resp.status == 200
        document = await resp.json()
    assert document["openapi"].startswith("3.1")
    documented = {(m, path) for path, item in document["paths"].items() for m in item if m != "parameters"}
    assert served == documented


async def test_schemathesis_finds_no_server_errors(service: RunningService, tmp_path: Path) -> None:
    text = await run_schemathesis(
        service,
        tmp_path,
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
        "problem_json_on_client_errors",
        "--max-examples",
        os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"),
    )
    print(text[-1500:])
