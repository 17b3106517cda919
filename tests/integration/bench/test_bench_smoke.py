"""`python -m bench --smoke` runs every part of the benchmark and writes a results file of the right shape.

Only the shape is checked: every figure names its baseline and carries a `*_ratio`. No timing is asserted
(the numbers of a one-second run on a shared machine mean nothing).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kube import missing_binaries
from tests.support.require import require

pytestmark = pytest.mark.needs_kube

ROOT = Path(__file__).resolve().parents[3]


def _nans(fig: dict[str, object]) -> list[str]:
    bad = []
    for key, value in fig.items():
        if isinstance(value, float) and math.isnan(value):
            bad.append(key)
    return bad


# A fresh machine first installs wrk (apt-get) and builds ghz (go install): minutes, once.
@pytest.mark.timeout(900)
def test_smoke_bench_writes_valid_results(tmp_path: Path) -> None:
    missing = missing_binaries(with_controller_manager=False)
    require(
        not missing, f"control-plane binaries missing in KUBEBUILDER_ASSETS: {missing} (run `make tools`)"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 1, files
    doc = json.loads(files[0].read_text())
    assert doc["mode"] == "smoke"
    assert (tmp_path / f"{doc['timestamp']}.png").stat().st_size > 0
    assert set(doc["tools"]) == {"http", "grpc", "database_baseline"}
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["note"]

    figures = {f["id"]: f for f in doc["figures"]}
    level = doc["settings"]["concurrency"]
    expected = {
        *(
            f"{proto}.{op}.c{level}"
            for proto in ("rest", "grpc")
            for op in ("get", "list", "create", "patch", "search")
        ),
        f"rest.get_vs_peer.c{level}",
        f"rest.get_authenticated.c{level}",
        f"rest.get_authenticated_vs_unauthenticated.c{level}",
        f"rest.get_authenticated_vs_peer.c{level}",
        f"rest.get_during_create.c{level}",
        "rest.batch_create",
        f"rest.verify_password.c{level}",
        f"rest.get_during_verify.c{level}",
        "events.commit_to_watch",
        "subscription.latency",
        "subscription.throughput.1",
        "subscription.throughput.50",
        f"subscription.get-beside-delivery.c{level}",
        "operator.create_to_children",
        "operator.converge",
        "operator.idle_writes",
        "operator.rss",
    }
    assert expected <= set(figures), expected - set(figures)
    for fid, fig in figures.items():
        assert isinstance(fig.get("baseline"), str) and fig["baseline"], fid
        ratios = [k for k in fig if k.endswith("_ratio")]
        assert ratios, f"{fid} has no *_ratio"
        for key in ratios:
            assert fig[key] is None or isinstance(fig[key], int | float), (fid, key)
        assert not _nans(fig), (fid, _nans(fig))
        # every figure and its baseline ran in interleaved rounds: a median with its spread
        for key in ratios:
            if fig[key] is not None and key in fig.get("spread", {}):
                low, high = fig["spread"][key]
                assert low <= fig[key] <= high, (fid, key)
        if "goal" in fig:
            assert fig["met"] in (True, False), (fid, fig["goal"])
    for fid, fig in figures.items():
        if fid.startswith(("rest.", "grpc.")) and "rps" in fig:
            assert fig["rounds"] == doc["settings"]["rounds"] >= 2, fid
    for proto in ("rest", "grpc"):
        get = figures[f"{proto}.get.c{level}"]
        # against the composed ceiling (a bare handler running the store's get) and raw asyncpg
        assert {"rps", "p50_ms", "p99_ms", "baseline_rps", "rps_ratio", "database_rps_ratio"} <= set(get)
        assert get["rps"] > 0 and get["baseline_rps"] > 0
    assert figures["operator.converge"]["converged"] == figures["operator.converge"]["count"]
    # the printed table names every figure
    for fid in figures:
        assert fid in proc.stdout
