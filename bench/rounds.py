"""Interleaved rounds: a figure and its baselines run in turn (figure, baseline, figure, baseline, ...) for
several rounds, so the machine's background load drifts over all of them alike. A figure reports, for each
metric, the median over its rounds and the spread (min-max); its ratio is the median of the per-round ratios
(each round's figure against the same round's baseline)."""

from __future__ import annotations

import operator
import re
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench.stats import Run

# metric -> (attribute of Run, ratio key)
METRICS = {"rps": "rps_ratio", "p50_ms": "p50_ratio", "p99_ms": "p99_ratio"}
_GOAL = re.compile(r"^(\w+) (<=|>=|<|>) ([0-9.]+)$")
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def interleave(
    rounds: int, steps: Sequence[tuple[str, Callable[[], Run]]], log: Callable[[Run], Run] = lambda r: r
) -> dict[str, list[Run]]:
    """Run every step once per round, in the given order; the runs of each step, by name."""
    out: dict[str, list[Run]] = {name: [] for name, _ in steps}
    for _ in range(rounds):
        for name, step in steps:
            out[name].append(log(step()))
    return out


def _value(run: Run, metric: str) -> float:
    return float(getattr(run, metric))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _r(v: float) -> float:
    return round(v, 3) if abs(v) < 10 else round(v, 1)


def summarize(
    fig: dict[str, Any],
    values: dict[str, Sequence[float]],
    baselines: dict[str, Sequence[float]] | None = None,
    *,
    ratio_keys: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write median and spread of each metric (and of its baseline and per-round ratio) into `fig`."""
    spread: dict[str, list[float]] = fig.setdefault("spread", {})
    for metric, vals in values.items():
        fig[metric] = _r(median(vals))
        spread[metric] = [_r(min(vals)), _r(max(vals))]
        base = (baselines or {}).get(metric)
        if not base:
            continue
        fig[f"baseline_{metric}"] = _r(median(base))
        spread[f"baseline_{metric}"] = [_r(min(base)), _r(max(base))]
        ratios = [v / b for v, b in zip(vals, base, strict=True) if b]
        if ratios:
            key = (ratio_keys or METRICS).get(metric, f"{metric}_ratio")
            fig[key] = round(median(ratios), 3)
            spread[key] = [round(min(ratios), 3), round(max(ratios), 3)]
    fig["rounds"] = max((len(v) for v in values.values()), default=0)
    return fig


def compare(
    fig: dict[str, Any],
    runs: Sequence[Run],
    base: Sequence[Run] | None,
    metrics: Sequence[str] = tuple(METRICS),
) -> dict[str, Any]:
    """`fig` with the medians and spreads of `runs` against `base` (Run lists of the same rounds)."""
    fig.setdefault("tool", runs[0].tool)
    fig["errors"] = sum(r.errors for r in runs)
    values = {m: [_value(r, m) for r in runs] for m in metrics}
    baselines = {m: [_value(r, m) for r in base] for m in metrics} if base else None
    return summarize(fig, values, baselines)


def meets(goal: str, fig: dict[str, Any]) -> bool | None:
    """Whether `fig` meets a goal written as "<key> <op> <number>" (None: the key was not measured)."""
    match = _GOAL.match(goal)
    if match is None:
        raise ValueError(f"goal {goal!r} is not '<key> <op> <number>'")
    key, op, number = match.groups()
    value = fig.get(key)
    if not isinstance(value, int | float):
        return None
    return bool(_OPS[op](value, float(number)))


def judge(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark every figure that has a goal with `met` (True, False, or None when not measured)."""
    for fig in figures:
        if "goal" in fig:
            fig["met"] = meets(fig["goal"], fig)
    return figures
