"""Every binary a test or the bench runs comes from the project's own install steps, never from whatever an
earlier run or a person left on the machine.

Binaries the project builds (`hack/tools.sh`) are found only through `tests.support.tools.project_tool`, which
looks nowhere but the tool cache. Anything found on PATH (`shutil.which`, or a bare command name handed to
subprocess) must be a command of the base machine or one a project script installs; for the latter the script
must really name the package. A test that looked up promtool on PATH would have passed on a machine where
Debian's prometheus package happened to be installed, and failed on every fresh one: this catches that.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCANNED = [ROOT / "tests", ROOT / "bench"]

# Commands every machine of this project's kind starts with (the `env` machine description lists them, Node.js with
# npm among them; make comes with gcc, and its registry probe ran curl).
BASE_SYSTEM = {"bash", "openssl", "apt-get", "go", "make", "curl", "node", "npm"}
# Commands a project file installs: command -> (package, file that installs it).
INSTALLED_BY_PROJECT = {
    "docker": ("docker.io", "hack/docker.sh"),
    "ipset": ("ipset", "hack/cluster.sh"),
    "wrk": ("wrk", "bench/tools.py"),
    "py-spy": ("py-spy", "pyproject.toml"),
}


def _built_by_tools_sh() -> set[str]:
    script = (ROOT / "hack" / "tools.sh").read_text()
    built = set(
        re.findall(r"^\s*(?:k8s_cmd|prometheus_cmd|prometheus_operator_cmd|go_install)\s+(\S+)", script, re.M)
    )
    if re.search(r"^etcd_server$", script, re.M):
        built.add("etcd")
    return built


def _calls(name: str) -> Iterator[tuple[str, str]]:
    """(file:line, first argument) of every call to `name` whose first argument is a literal string."""
    for folder in SCANNED:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and ast.unparse(node.func) == name and node.args:
                    first = node.args[0]
                    if isinstance(first, (ast.List, ast.Tuple)) and first.elts:
                        first = first.elts[0]
                    if isinstance(first, ast.Constant) and isinstance(first.value, str):
                        yield f"{path.relative_to(ROOT)}:{node.lineno}", first.value


def _path_lookups() -> list[tuple[str, str]]:
    lookups = list(_calls("shutil.which"))
    for call in ("subprocess.run", "subprocess.Popen", "subprocess.check_output", "subprocess.call"):
        lookups += [(where, cmd) for where, cmd in _calls(call) if "/" not in cmd]
    return lookups


def test_project_tools_are_only_looked_up_in_the_tool_cache() -> None:
    built = _built_by_tools_sh()
    assert {"kube-apiserver", "etcd", "kubectl", "helm", "prometheus", "promtool"} <= built
    on_path = [f"{where}: {cmd}" for where, cmd in _path_lookups() if cmd in built]
    assert not on_path, f"tools hack/tools.sh builds, looked up on PATH instead of project_tool(): {on_path}"


def test_project_tool_names_are_built_by_tools_sh() -> None:
    built = _built_by_tools_sh()
    unknown = [f"{where}: {name}" for where, name in _calls("project_tool") if name not in built]
    assert not unknown, f"project_tool() names that hack/tools.sh does not build: {unknown}"


def test_commands_found_on_path_come_from_the_base_machine_or_a_project_install_step() -> None:
    unaccounted = [
        f"{where}: {cmd}"
        for where, cmd in _path_lookups()
        if cmd not in BASE_SYSTEM and cmd not in INSTALLED_BY_PROJECT
    ]
    assert not unaccounted, (
        f"commands looked up on PATH that neither the base machine nor a project file provides: {unaccounted}; "
        "build them in hack/tools.sh and use project_tool(), or install them from a project script"
    )


@pytest.mark.parametrize("command", sorted(INSTALLED_BY_PROJECT))
def test_the_installing_file_names_the_package(command: str) -> None:
    package, installer = INSTALLED_BY_PROJECT[command]
    assert re.search(rf"(?<![\w.-]){re.escape(package)}(?![\w-])", (ROOT / installer).read_text()), (
        f"{installer} is said to install {package} (for {command}) but never names it"
    )
