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
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(fig: dict[str, Any], key: str | None) -> str:
    """A value with its spread over the rounds: `median (min-max)`."""
    if key is None or key not in fig:
        return "-"
    spread = (fig.get("spread") or {}).get(key)
    text = _fmt(fig[key])
    if spread and spread[0] != spread[1]:
        text += f" ({_fmt(spread[0])}\N{EN DASH}{_fmt(spread[1])})"
    return text


# The figure keys shown in the table, in order: (value key, baseline key, ratio key).
_TRIPLES = (
    ("rps", "baseline_rps", "rps_ratio"),
    ("users_per_s", "baseline_users_per_s", "users_per_s_ratio"),
    ("p50_ms", "baseline_p50_ms", "p50_ratio"),
    ("p99_ms", "baseline_p99_ms", "p99_ratio"),
    ("rps", "database_rps", "database_rps_ratio"),
    ("seconds", "baseline_seconds", "seconds_ratio"),
    ("writes_per_us_per_min", "baseline_writes_per_us_per_min", "writes_ratio"),
    ("rss_mib", "baseline_rss_mib", "rss_ratio"),
    ("deliveries_per_s", "baseline_deliveries_per_s", "deliveries_ratio"),
)
_UNITS = {
    "rps": "req/s",
    "users_per_s": "users/s",
    "p50_ms": "ms",
    "p99_ms": "ms",
    "seconds": "s",
    "deliveries_per_s": "/s",
}


def _rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for fig in doc["figures"]:
        for value_key, base_key, ratio_key in _TRIPLES:
            if value_key not in fig or (ratio_key not in fig and base_key not in fig):
                continue
            metric = "rps vs asyncpg" if base_key == "database_rps" else value_key
            goal_key = fig.get("goal", "").split(" ")[0]
            mark = _goal_mark(fig) if goal_key in (ratio_key, value_key) and metric == value_key else ""
            rows.append(
                (fig["id"], metric, _cell(fig, value_key), _cell(fig, base_key), _cell(fig, ratio_key), mark)
            )
    return rows


def _goal_mark(fig: dict[str, Any]) -> str:
    met = fig.get("met")
    return f"{fig['goal']} {'met' if met else 'NOT met' if met is False else 'not measured'}"


def table(doc: dict[str, Any]) -> str:
    rows = [("figure", "metric", "value", "baseline", "ratio", "goal"), *_rows(doc)]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = [
        "  ".join(
            cell.ljust(w) if i in (0, 1, 5) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    """Every figure of a results file in Markdown (docs/performance.md)."""
    out = [
        "| figure | metric | value | baseline | ratio | goal |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    out += ["| " + " | ".join(row) + " |" for row in _rows(doc)]
    return "\n".join(out)


def goals(doc: dict[str, Any]) -> str:
    """The README's table: every figure that has a goal, or is reported without one ("reported": its ratio key),
    its measured ratio (median and spread over the rounds), the goal and whether it is met."""
    out = [
        "| figure | value | baseline | ratio | goal | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for fig in doc["figures"]:
        if "goal" not in fig and "reported" not in fig:
            continue
        key = fig["goal"].split(" ")[0] if "goal" in fig else fig["reported"]
        triple = next((t for t in _TRIPLES if key in t), None)
        value_key, base_key = (triple[0], triple[1]) if triple else (key, None)
        if key == "seconds":
            value_key, base_key = "seconds", None
        unit = _UNITS.get(value_key, "")
        met = fig.get("met")
        out.append(
            "| "
            + " | ".join(
                [
                    f"{fig['what']} (`{fig['id']}`)",
                    f"{_cell(fig, value_key)} {unit}".strip(),
                    f"{_cell(fig, base_key)} {unit}".strip() if base_key else "-",
                    _cell(fig, key) if key != value_key else "-",
                    fig["goal"].replace(key, "ratio" if key != "seconds" else "seconds", 1)
                    if "goal" in fig
                    else "reported",
                    "-"
                    if "goal" not in fig
                    else "yes"
                    if met
                    else "**no**"
                    if met is False
                    else "not measured",
                ]
            )
            + " |"
        )
    return "\n".join(out)


def chart(doc: dict[str, Any], path: Path) -> Path:
    """Get by id against its ceilings, the peer and the database; and every goal ratio against its goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figs = {f["id"]: f for f in doc["figures"]}
    c = doc["settings"]["concurrency"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    fig.suptitle(
        f"userservice bench {doc['timestamp']} ({doc['mode']}; {doc['machine']['summary']})", fontsize=10
    )
    rest, grpc = figs.get(f"rest.get.c{c}", {}), figs.get(f"grpc.get.c{c}", {})
    peer = figs.get(f"rest.get_vs_peer.c{c}", {})
    bars = [
        ("REST", rest, "rps"),
        ("aiohttp ceiling", rest, "baseline_rps"),
        ("gRPC", grpc, "rps"),
        ("grpc.aio ceiling", grpc, "baseline_rps"),
        ("peer (FastAPI)", peer, "baseline_rps"),
        ("raw asyncpg", rest, "database_rps"),
    ]
    heights = [float(f.get(k) or 0) for _, f, k in bars]
    spreads = [(f.get("spread") or {}).get(k) or [h, h] for (_, f, k), h in zip(bars, heights, strict=True)]
    errors = [
        [h - s[0] for h, s in zip(heights, spreads, strict=True)],
        [s[1] - h for h, s in zip(heights, spreads, strict=True)],
    ]
    left.bar([b[0] for b in bars], heights, yerr=errors, capsize=4)
    left.set_title(f"get by id, {c} concurrent: median and min-max of the rounds", fontsize=10)
    left.set_ylabel("requests/s")
    left.tick_params(axis="x", labelsize=8, rotation=20)
    goal_figs = [f for f in doc["figures"] if "goal" in f and f["goal"].split(" ")[0].endswith("_ratio")]
    labels = [f["id"] for f in goal_figs]
    values = [float(f.get(f["goal"].split(" ")[0]) or 0) for f in goal_figs]
    targets = [float(f["goal"].split(" ")[2]) for f in goal_figs]
    colors = ["tab:green" if f.get("met") else "tab:red" for f in goal_figs]
    ys = range(len(goal_figs))
    right.barh(ys, values, color=colors)
    right.scatter(targets, ys, marker="|", s=300, color="black", label="goal")
    right.set_yticks(ys, labels, fontsize=7)
    right.set_xscale("log")
    right.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_title("goal ratios (green: met, red: not met)", fontsize=10)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
