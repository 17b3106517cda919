"""`make lint`'s `buf breaking` against proto/breaking-baseline.json (the released contract) fails a change that
would break a client built against it, on a copy of proto/ changed on purpose, and lets compatible changes and a
new package version through."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.tools import project_tool

ROOT = Path(__file__).resolve().parents[3]
PROTO = ROOT / "proto"
FILE = "userservice/v1/user_service.proto"


def breaking(tmp_path: Path, change: Callable[[Path], None]) -> subprocess.CompletedProcess[str]:
    """`buf breaking` as `make lint` runs it, on a copy of proto/ after `change`."""
    copy = tmp_path / "proto"
    shutil.copytree(PROTO, copy)
    change(copy)
    return subprocess.run(
        [project_tool("buf"), "breaking", "--against", "breaking-baseline.json"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
    )


def edit(old: str, new: str) -> Callable[[Path], None]:
    def apply(copy: Path) -> None:
        path = copy / FILE
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return apply


def test_the_baseline_is_a_build_of_the_service_contract() -> None:
    image = json.loads((PROTO / "breaking-baseline.json").read_text())
    assert FILE in {f["name"] for f in image["file"]}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            edit("  string password_hash = 14;\n", ""),
            'Previously present field "14" with name "password_hash"',
        ),
        (edit("  int64 version = 10;", "  string version = 10;"), 'changed type from "int64" to "string"'),
        (edit("  string nickname = 4;", "  string nick_name = 4;"), 'changed name from "nickname"'),
        (edit("  rpc UnlockUser(UnlockUserRequest) returns (User);\n", ""), "UnlockUser"),
    ],
    ids=["field-deleted", "type-changed", "json-name-changed", "method-deleted"],
)
def test_a_change_that_breaks_clients_fails(
    tmp_path: Path, change: Callable[[Path], None], complaint: str
) -> None:
    result = breaking(tmp_path, change)
    assert result.returncode != 0 and complaint in result.stdout, result.stdout + result.stderr


def new_version(copy: Path) -> None:
    """userservice.v2 beside v1: the way to make a change v1 cannot take."""
    v2 = copy / "userservice/v2/user_service.proto"
    v2.parent.mkdir()
    v2.write_text(
        (copy / FILE)
        .read_text()
        .replace("package userservice.v1;", "package userservice.v2;")
        .replace("userservice/v1;userservicev1", "userservice/v2;userservicev2")
        .replace("  string password_hash = 14;\n", "")
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda copy: None,
        edit("  string authid = 11;\n", "  string authid = 11;\n  string reason = 12;\n"),
        new_version,
    ],
    ids=["unchanged", "field-added", "new-package-version"],
)
def test_a_compatible_change_passes(tmp_path: Path, change: Callable[[Path], None]) -> None:
    result = breaking(tmp_path, change)
    assert result.returncode == 0, result.stdout + result.stderr
