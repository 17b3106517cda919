"""The results file (bench/results/<UTC timestamp>.json), the printed table and the PNG chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def write(doc: dict[str, Any], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{doc['timestamp']}.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


# The figure keys shown in the table, in order: (value key, baseline key, ratio key).
_TRIPLES = (
    ("rps", "baseline_rps", "rps_ratio"),
    ("users_per_s", "baseline_users_per_s", "users_per_s_ratio"),
    ("p50_ms", "baseline_p50_ms", "p50_ratio"),
    ("p99_ms", "baseline_p99_ms", "p99_ratio"),
    ("framework_rps", None, "framework_rps_ratio"),
    ("get_p99_ms", None, "get_p99_ratio"),
    ("seconds", "baseline_seconds", "seconds_ratio"),
    ("writes_per_us_per_min", "baseline_writes_per_us_per_min", "writes_ratio"),
    ("rss_mib", "baseline_rss_mib", "rss_ratio"),
)


def table(doc: dict[str, Any]) -> str:
    rows = [("figure", "metric", "value", "baseline", "ratio")]
    for fig in doc["figures"]:
        for value_key, base_key, ratio_key in _TRIPLES:
            if value_key not in fig:
                continue
            base = fig.get(base_key) if base_key else None
            if value_key == "framework_rps":
                value, base = fig.get("rps"), fig["framework_rps"]
                metric = "rps vs bare"
            elif value_key == "get_p99_ms":
                value, base = fig.get("p99_ms"), fig["get_p99_ms"]
                metric = "p99 vs get p99"
            else:
                value, metric = fig[value_key], value_key
            rows.append((fig["id"], metric, _fmt(value), _fmt(base), _fmt(fig.get(ratio_key))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    """The same table in Markdown (for docs/performance.md and the README)."""
    out = ["| figure | metric | value | baseline | ratio |", "| --- | --- | ---: | ---: | ---: |"]
    for line in table(doc).splitlines()[2:]:
        cells = line.split()
        out.append("| " + " | ".join([cells[0], " ".join(cells[1:-3]), *cells[-3:]]) + " |")
    return "\n".join(out)


def chart(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {f["id"]: f for f in doc["figures"]}
    levels = doc["settings"]["concurrency_levels"]
    c = levels[-1]
    ops = ["get", "list", "create", "patch"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    fig.suptitle(
        f"userservice bench {doc['timestamp']} ({doc['mode']}; {doc['machine']['summary']})", fontsize=10
    )

    def bars(
        ax: Any, series: list[tuple[str, list[float]]], labels: list[str], title: str, ylabel: str
    ) -> None:
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(series):
            xs = [x + i * width for x in range(len(labels))]
            ax.bar(xs, values, width, label=name)
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)

    def get(key: str, field: str) -> float:
        value = figs.get(key, {}).get(field)
        return float(value) if isinstance(value, int | float) else 0.0

    bars(
        axes[0][0],
        [
            ("REST", [get(f"rest.{op}.c{c}", "rps") for op in ops]),
            ("gRPC", [get(f"grpc.{op}.c{c}", "rps") for op in ops]),
            ("raw asyncpg (baseline)", [get(f"rest.{op}.c{c}", "baseline_rps") for op in ops]),
        ],
        ops,
        f"throughput at {c} concurrent",
        "requests/s",
    )
    bars(
        axes[0][1],
        [
            ("REST", [get(f"rest.{op}.c{c}", "p99_ms") for op in ops]),
            ("gRPC", [get(f"grpc.{op}.c{c}", "p99_ms") for op in ops]),
            ("raw asyncpg (baseline)", [get(f"rest.{op}.c{c}", "baseline_p99_ms") for op in ops]),
        ],
        ops,
        f"p99 latency at {c} concurrent",
        "ms",
    )
    ax = axes[1][0]
    for proto, label in (("rest", "REST get"), ("grpc", "gRPC get")):
        ax.plot(levels, [get(f"{proto}.get.c{x}", "rps") for x in levels], marker="o", label=label)
        ax.plot(
            levels,
            [get(f"{proto}.get.c{x}", "framework_rps") for x in levels],
            linestyle="--",
            marker="x",
            label=f"{label}: bare framework (baseline)",
        )
    ax.plot(
        levels,
        [get(f"rest.get.c{x}", "baseline_rps") for x in levels],
        linestyle=":",
        marker="s",
        label="get: raw asyncpg (baseline)",
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(x) for x in levels])
    ax.set_title("get by id: throughput by concurrency", fontsize=10)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests/s")
    ax.legend(fontsize=7)
    ax = axes[1][1]
    ev = figs.get("events.commit_to_watch", {})
    gd = next((f for f in doc["figures"] if f["id"].startswith("rest.get_during_create")), {})
    op = figs.get("operator.create_to_children", {})
    labels = ["event p99", "GET p99 during creates", "operator create->children p99"]
    measured = [ev.get("p99_ms", 0), gd.get("p99_ms", 0), op.get("p99_ms", 0)]
    baseline = [ev.get("baseline_p99_ms", 0), gd.get("baseline_p99_ms", 0), op.get("baseline_p99_ms", 0)]
    bars(ax, [("measured", measured), ("baseline", baseline)], labels, "latency against its baseline", "ms")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
