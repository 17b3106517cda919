"""The load tools: `wrk` (Debian package) for HTTP and `ghz` (`go install`, pinned) for gRPC; the Python peer's
virtualenv (bench/peer/requirements.txt); the Go peer, Ory Kratos, built from its tools module (bench/peer/kratos).

Installed on first use so a fresh CI machine needs nothing by hand: `apt-get install wrk` when it is missing
(as root), `go install` of ghz into .cache/tools/bin, the peer's pins into .cache/bench-peer, `go build` of Kratos
into .cache/tools/bin (a full `make bench` only: the smoke run and the tests never build it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = ROOT / ".cache" / "tools" / "bin"
GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "v0.120.0"
PEER_REQUIREMENTS = ROOT / "bench" / "peer" / "requirements.txt"
PEER_VENV = ROOT / ".cache" / "bench-peer"
KRATOS_MODULE = (
    ROOT / "bench" / "peer" / "kratos"
)  # go.mod: `tool github.com/ory/kratos` at its pinned version


def _versions() -> dict[str, str]:
    out = {}
    for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def kube_assets() -> Path:
    """KUBEBUILDER_ASSETS as the Makefile sets it (exported here too for `python -m bench` by hand)."""
    value = os.environ.get("KUBEBUILDER_ASSETS")
    if not value:
        value = str(ROOT / ".cache" / "tools" / "k8s" / f"{_versions()['K8S_VERSION']}-linux-amd64")
        os.environ["KUBEBUILDER_ASSETS"] = value
    return Path(value)


def wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("wrk is missing: apt-get install wrk (as root)")
    print("installing wrk (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after apt-get install")
    return found


def ghz() -> str:
    path = TOOLS_BIN / "ghz"
    if os.access(path, os.X_OK):
        return str(path)
    go = shutil.which("go")
    if not go:
        raise RuntimeError("ghz is missing and there is no Go toolchain to `go install` it")
    print(f"installing ghz {GHZ_VERSION} (go install)", flush=True)
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "install", f"{GHZ_MODULE}@{GHZ_VERSION}"],
        check=True,
        env={**os.environ, "GOBIN": str(TOOLS_BIN)},
        capture_output=True,
    )
    return str(path)


def version(cmd: list[str]) -> str:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0] if text else "?"


def peer_python() -> str:
    """The Python of the peer's own virtualenv, made (or remade, when the pins changed) on first use."""
    python, stamp = PEER_VENV / "bin" / "python", PEER_VENV / "requirements.txt"
    wanted = PEER_REQUIREMENTS.read_text()
    if os.access(python, os.X_OK) and stamp.exists() and stamp.read_text() == wanted:
        return str(python)
    print("installing the peer's pins into .cache/bench-peer (pip)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True, capture_output=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*pip, "-r", str(PEER_REQUIREMENTS)], check=True, capture_output=True)
    stamp.write_text(wanted)
    return str(python)


def kratos_version() -> str:
    """The Kratos version the tools module pins (its go.mod's require line)."""
    found = re.search(r"^\s*github\.com/ory/kratos (v\S+)", (KRATOS_MODULE / "go.mod").read_text(), re.M)
    if found is None:
        raise RuntimeError(f"{KRATOS_MODULE / 'go.mod'} pins no github.com/ory/kratos version")
    return found.group(1)


def kratos() -> tuple[str, float | None]:
    """The Kratos binary, and the seconds its build took when this call built it (None: it was there already).
    Built with the tools module's go.mod and go.sum, so every dependency is the pinned one."""
    path = TOOLS_BIN / f"kratos-{kratos_version()}"
    if os.access(path, os.X_OK):
        return str(path), None
    go = shutil.which("go")
    if not go:
        raise RuntimeError("Kratos is missing and there is no Go toolchain to build it")
    print(
        f"building Ory Kratos {kratos_version()} (go build in bench/peer/kratos; minutes, once)", flush=True
    )
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    started = time.monotonic()
    built = subprocess.run(
        [go, "build", "-o", str(partial), "github.com/ory/kratos"],
        cwd=KRATOS_MODULE,
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        raise RuntimeError(f"building Kratos failed:\n{built.stderr[-3000:]}")
    partial.rename(path)
    seconds = time.monotonic() - started
    print(f"built Kratos in {seconds:.0f} s", flush=True)
    return str(path), seconds
