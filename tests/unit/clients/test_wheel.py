"""clients/python builds as a wheel that carries the client, its generated messages and their type stubs, and
imports on its own (from the wheel, not from the repository)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_client_builds_as_a_wheel_that_imports(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources, and a stale build/ could
    # put files into the wheel that the sources no longer have.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "clients/python", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("userservice_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for name in (
        "userservice_client/client.py",
        "userservice_client/py.typed",
        "userservice_client/_generated/userservice/v1/user_service_pb2.py",
        "userservice_client/_generated/userservice/v1/user_service_pb2.pyi",
    ):
        assert name in names, name
    assert "Name: userservice-client" in metadata and "Requires-Dist: grpcio" in metadata
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--target", str(site), str(wheel)],
        check=True,
    )  # fmt: skip
    probe = "import userservice_client as c; print(c.__file__); print(c.messages.User(nickname='x').nickname)"
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out == [str(site / "userservice_client/__init__.py"), "x"]
