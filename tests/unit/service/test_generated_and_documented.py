"""Generated code and reference docs stay in step with their single sources."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from hack.docgen import PAGES
from tests.support.require import require
from tests.support.tools import project_tool
from userservice.config import SETTINGS, Config

ROOT = Path(__file__).resolve().parents[3]


# Every folder `make proto-generate` writes (hack/proto-generate.sh), in full.
GENERATED = (
    "service/userservice/v1",
    "clients/python/src/userservice_client/_generated",
    "clients/go/userservice",
    "clients/ts/src/gen",
)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_of_every_language_is_current(tmp_path: Path) -> None:
    for tool in ("buf", "protoc-gen-go", "protoc-gen-go-grpc"):
        project_tool(tool)
    require(
        (ROOT / "clients/ts/node_modules/.bin/protoc-gen-es").exists(),
        "clients/ts/node_modules is missing (run `make ts-deps`)",
    )
    subprocess.run(["bash", str(ROOT / "hack/proto-generate.sh"), str(tmp_path)], check=True, cwd=ROOT)
    for folder in GENERATED:
        generated, committed = _files(tmp_path / folder), _files(ROOT / folder)
        assert generated, folder
        stale = sorted(
            name for name in generated.keys() | committed.keys() if generated.get(name) != committed.get(name)
        )
        assert not stale, f"stale generated code in {folder}: run `make proto-generate` ({stale})"


@pytest.mark.parametrize(("page", "render"), PAGES, ids=[page for page, _ in PAGES])
def test_reference_docs_are_rendered_from_their_sources(page: str, render: Callable[[str], str]) -> None:
    """configuration.md (whole page), api.md's field table, operator.md's UserService fields and child kinds."""
    text = (ROOT / page).read_text()
    assert render(text) == text, f"{page} is stale: run `make docs`"


def test_every_setting_is_in_the_configuration_page_with_its_default() -> None:
    doc = (ROOT / "docs/configuration.md").read_text()
    for setting in SETTINGS.values():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{setting.env}`")), None)
        assert row is not None, f"{setting.env} missing from docs/configuration.md"
        assert f"`{setting.default}`" in row or (not setting.default and "unset" in row), row


def test_defaults_parse_and_production_hashing_is_owasp_level() -> None:
    config = Config.from_env({"DATABASE_URL": "postgresql://x/y"})
    assert (config.argon2_time_cost, config.argon2_memory_kib, config.argon2_parallelism) == (2, 19456, 1)
    assert config.http_port == 8080 and config.grpc_port == 50051 and not config.migrate_on_start


def test_error_codes_agree_in_the_contract_the_docs_and_the_server() -> None:
    """Each domain error's gRPC code and ErrorInfo reason, as the server maps them, is what the proto's service
    comment says (the code named last before the reason is the server's code) and what docs/api.md's error
    table says, with the REST status."""
    import grpc

    from userservice.api.grpc import STATUS_CODES
    from userservice.api.problem import PROBLEMS

    proto = (ROOT / "proto/userservice/v1/user_service.proto").read_text()
    contract = proto.split("service UserService")[0].rsplit("// Errors", 1)[1]
    code_names = {c.name for c in grpc.StatusCode}
    rows = [line for line in (ROOT / "docs/api.md").read_text().splitlines() if line.startswith("| ")]
    for error, (code, reason) in STATUS_CODES.items():
        assert code.name in contract, code.name
        if reason != code.name:
            assert reason in contract, f"the proto does not name {reason}"
            before = contract[: contract.index(reason)]
            named_last = [word for word in re.findall(r"\b[A-Z_]+\b", before) if word in code_names][-1]
            assert named_last == code.name, (
                f"the proto says {named_last} for {reason}, the server {code.name}"
            )
        status, slug, _ = PROBLEMS[error]
        row = next((line for line in rows if f"`{slug}`" in line), None)
        assert row is not None, f"docs/api.md has no row for {slug}"
        assert f"{status} `{slug}`" in row and code.name in row, row
