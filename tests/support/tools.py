"""Where tests find the binaries the project builds: in its own tool cache, and nowhere else.

`hack/tools.sh` builds them at the versions pinned in hack/versions.env into `.cache/tools/bin` and the envtest
folder (`KUBEBUILDER_ASSETS`). A copy elsewhere on PATH (a Debian package, a developer's own install, something an
earlier run left behind) is never used: a test that passed on such a copy would fail on a fresh machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.require import require

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".cache" / "tools" / "bin"


def _pins() -> dict[str, str]:
    lines = (ROOT / "hack" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def k8s_assets() -> Path:
    """The envtest folder: KUBEBUILDER_ASSETS when set (the Makefile sets it), else the tool cache's own."""
    default = TOOLS_BIN.parent / "k8s" / f"{_pins()['K8S_VERSION']}-linux-amd64"
    return Path(os.environ.get("KUBEBUILDER_ASSETS") or default)


def project_tool(name: str, make_target: str = "tools") -> str:
    """Path of a binary `hack/tools.sh` builds; skips (laptop) or fails (CI) naming the make target when absent."""
    for folder in (k8s_assets(), TOOLS_BIN):
        candidate = folder / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    require(False, f"{name} not found in {TOOLS_BIN} or {k8s_assets()} (run `make {make_target}`)")
    raise AssertionError("unreachable: require() fails or skips")
