"""docs/operator.md's first section, "Try it on the one-node cluster", run from its own text: its sh blocks in order,
in one bash from the repository's root, as a newcomer would paste them (kubectl and helm are not on PATH and
KUBECONFIG is unset until the docs say so), from a machine without a cluster: `make cluster-down` first takes down
the one the other e2e tests used (it runs after them all, conftest), busy with their pods. The docs end with
`make cluster-down`: then nothing of the cluster is left on the machine, and another `make cluster-down` is
harmless."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.e2e.conftest import CLUSTER_DIR, ROOT
from tests.support.docs import shell_blocks
from tests.support.require import require

HEADING = "## Try it on the one-node cluster"
RUN_DIR = "/run/usvc-cluster/"
CLUSTER_RULES = re.compile(r"KUBE-|CNI-|usvc-cluster|kube-router")
CLUSTER_IPSETS = re.compile(r"^(inet6:)?(KUBE-(SRC|DST)-|kube-router-)")
MARK = "@@ docs block done"


def newcomer_env() -> dict[str, str]:
    """This environment without what make or an earlier session put there: the project's tools on PATH, KUBECONFIG,
    IMAGE, make's own variables."""
    tools = str(ROOT / ".cache")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "IMAGE", "KUBEBUILDER_ASSETS")
        and not k.startswith("MAKE")
        and k != "MFLAGS"
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(tools))
    return env


def cluster_leftovers() -> list[str]:
    """What of the one-node cluster is still on this machine, looked for independently of hack/cluster.sh."""
    found: list[str] = []
    states = (f"{CLUSTER_DIR}/", f"{CLUSTER_DIR.resolve()}/")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (
            any(state in cmd for state in states)
            or RUN_DIR in cmd
            or re.search(r"hack/cluster\.sh (dns|volume)-sync", cmd)
        ):
            found.append(f"process {cmdline.parent.name}: {cmd[:120]}")
    found += [f"cgroup {d}" for d in Path("/sys/fs/cgroup").glob("*/kubepods")]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount = line.split()[4]
        if mount.startswith((*states, RUN_DIR)):
            found.append(f"mount {mount}")
    if Path("/sys/class/net/usvc0").exists():
        found.append("bridge usvc0")
    found += [f"network namespace {ns}" for ns in Path("/run/netns").glob("cni-*")]
    for save in ("iptables-save", "ip6tables-save"):
        out = subprocess.run([save], capture_output=True, text=True, check=False).stdout
        found += [f"{save}: {line}" for line in out.splitlines() if CLUSTER_RULES.search(line)]
    ipsets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True, check=False).stdout
    found += [f"ipset {name}" for name in ipsets.split() if CLUSTER_IPSETS.match(name)]
    return found


def cluster_down() -> None:
    """`make cluster-down`: succeeds, says it left nothing, and nothing is left."""
    down = subprocess.run(
        ["make", "cluster-down"], cwd=ROOT, env=newcomer_env(), capture_output=True, text=True, timeout=600
    )
    assert down.returncode == 0, down.stderr
    assert "nothing left behind" in down.stderr
    assert cluster_leftovers() == []


def test_the_docs_path_from_a_clean_shell_to_a_guarded_userservice_and_back(
    timings: list[tuple[str, float]],
) -> None:
    require(os.geteuid() == 0, "the local cluster needs root (kubelet, containerd, iptables)")
    blocks = shell_blocks(ROOT / "docs" / "operator.md", HEADING)
    assert "make cluster-up" in blocks[0] and blocks[-1].rstrip().endswith("make cluster-down")
    # A newcomer's machine has no cluster: the one earlier tests left running, busy with their pods, goes first.
    cluster_down()
    script = "".join(f"{block}echo '{MARK}' {n} \"$SECONDS\"\n" for n, block in enumerate(blocks, 1))
    log_path = CLUSTER_DIR.parent / "docs-path.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-x", "-c", script],
            cwd=ROOT,
            env=newcomer_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        done = 0
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if line.startswith(MARK):
                n, seconds = map(int, line.split()[-2:])
                first = blocks[n - 1].strip().splitlines()[0]
                timings.append((f"  docs block {n}: {first[:58]}", seconds - done))
                done = seconds
        rc = proc.wait(timeout=3600)
    tail = "".join(log_path.read_text().splitlines(keepends=True)[-60:])
    assert rc == 0, f"the docs path failed (full log: {log_path}):\n{tail}"
    assert cluster_leftovers() == []
    cluster_down()  # again: harmless
