"""schemathesis in negative mode: inputs that break the OpenAPI schema (wrong types, missing and extra fields,
out-of-range values, NUL bytes) are refused with a 4xx problem+json, never a 5xx."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.schemathesis import run_schemathesis
from tests.support.service import RunningService


async def test_schema_violations_are_refused_with_problems(service: RunningService, tmp_path: Path) -> None:
    await run_schemathesis(
        service,
        tmp_path,
        "--mode",
        "negative",
        "--checks",
        "not_a_server_error,content_type_conformance,problem_json_on_client_errors",
        "--generation-allow-x00",
        "true",
        "--max-examples",
        os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"),
    )
