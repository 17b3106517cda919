"""The README's performance table is generated from the committed results file, and the rounds arithmetic
that every figure of that file goes through."""

from __future__ import annotations

import json

import pytest

from bench import report, results, rounds
from bench.stats import Run


def test_readme_table_is_generated_from_the_committed_results() -> None:
    doc = json.loads((results.RESULTS / "latest.json").read_text())
    text = report.README.read_text()
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1
    assert report.replace_block(text, report.readme_block(doc)) == text, (
        "README.md's performance table is not the one of bench/results/latest.json:"
        " run `python -m bench.report --readme`"
    )
    # every goal of the run is in the table, with its verdict
    for fig in doc["figures"]:
        if "goal" in fig:
            assert f"`{fig['id']}`" in text


def _run(rps: float, p99: float) -> Run:
    return Run("wrk", "t", "get", 16, 1.0, int(rps), 0, p99 / 2, p99)


def test_a_figure_is_the_median_of_paired_round_ratios_with_their_spread() -> None:
    runs = [_run(100, 10), _run(300, 30), _run(200, 20)]
    base = [_run(200, 5), _run(300, 10), _run(400, 40)]
    fig = rounds.compare({"goal": "rps_ratio >= 0.6"}, runs, base)
    assert fig["rps"] == 200 and fig["spread"]["rps"] == [100, 300]
    assert fig["baseline_rps"] == 300 and fig["spread"]["baseline_rps"] == [200, 400]
    # per round: 0.5, 1.0, 0.5 -> median 0.5 (not 200/300)
    assert fig["rps_ratio"] == 0.5 and fig["spread"]["rps_ratio"] == [0.5, 1.0]
    assert fig["p99_ratio"] == 2.0 and fig["rounds"] == 3
    assert rounds.judge([fig])[0]["met"] is False


@pytest.mark.parametrize(
    ("goal", "value", "met"),
    [("rps_ratio >= 0.8", 0.8, True), ("p99_ratio <= 2", 2.1, False), ("seconds < 30", 29.9, True)],
)
def test_goals_are_read_from_their_text(goal: str, value: float, met: bool) -> None:
    assert rounds.meets(goal, {goal.split()[0]: value}) is met
    assert rounds.meets(goal, {}) is None
