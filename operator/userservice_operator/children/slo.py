"""Service level objectives (spec.slo) as Prometheus rules, a part of the PrometheusRule.

Per objective: recording rules of the error ratio over each window the alerts read, and two multi-window,
multi-burn-rate alerts (the Google SRE workbook, "Alerting on SLOs"): an error budget of 30 days spent 14.4x as
fast as allowed for an hour (2 % of the budget) or 6x for six hours (5 %) pages; 3x for a day or 1x for three
days (10 % each) opens a ticket. Each long window is paired with a short one (1/12 of it), so an alert stops
soon after the burn does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from userservice_operator.children.promql import (
    DURATION_BUCKETS,
    HTTP_TRAFFIC,
    REQUESTS,
    SERVER_ERRORS,
    UNARY,
    with_selector,
)
from userservice_operator.spec import UserService

PERIOD = "30d"
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
BY = "namespace, service"


@dataclass(frozen=True)
class Burn:
    """One alert: fire when any (long window, short window, burn factor) pair is over its rate."""

    suffix: str
    severity: str
    windows: tuple[tuple[str, str, str], ...]

    def rates(self) -> str:
        return " or ".join(f"{factor}x over {long}" for long, _, factor in self.windows)


BURNS = (
    Burn("FastBurn", "critical", (("1h", "5m", "14.4"), ("6h", "30m", "6"))),
    Burn("SlowBurn", "warning", (("1d", "2h", "3"), ("3d", "6h", "1"))),
)


def le_label(seconds: float) -> str:
    """A bucket bound as the Python client (and Prometheus 3's normalisation) writes its `le` label."""
    return repr(float(seconds))


def budget(objective: float) -> str:
    """The error budget of an objective in percent, as an exact decimal (99.9 -> 0.001)."""
    return str(((Decimal(100) - Decimal(str(objective))) / 100).normalize())


def budget_remaining(error_ratio: float, objective: float) -> float:
    """Share of the error budget left after `error_ratio` of the period's requests failed: 1 untouched, 0 spent,
    negative when overspent."""
    return 1 - error_ratio / float(budget(objective))


def record_name(sli: str, window: str) -> str:
    return f"userservice:slo_{sli}_errors:ratio_rate{window}"


def error_ratio(us: UserService, sli: str, window: str) -> str:
    """The share of bad requests of one SLI over `window`, per UserService."""
    sel = f'namespace="{us.namespace}",service="{us.name}"'
    if sli == "availability":
        total = with_selector(REQUESTS, sel, HTTP_TRAFFIC)
        errors = f"sum by ({BY}) (rate({{{with_selector(total, SERVER_ERRORS)}}}[{window}]))"
        all_ = f"sum by ({BY}) (rate({{{total}}}[{window}]))"
        # No error at all gives no series; `or 0 * all` makes it 0 so the ratio exists whenever traffic does.
        return f"({errors} or 0 * {all_}) / {all_}"
    latency = us.spec.slo.latency
    assert latency is not None
    unary = with_selector(DURATION_BUCKETS, sel, UNARY)
    fast = f'sum by ({BY}) (rate({{{unary},le="{le_label(latency.threshold_seconds)}"}}[{window}]))'
    every = f'sum by ({BY}) (rate({{{unary},le="+Inf"}}[{window}]))'
    return f"1 - {fast} / {every}"


def objectives(us: UserService) -> dict[str, float]:
    """The SLIs with an objective, and the objective (percent)."""
    slo = us.spec.slo
    found = {"availability": slo.availability, "latency": slo.latency}
    return {sli: o.objective for sli, o in found.items() if o is not None}


def rules(us: UserService, alert: Any) -> list[dict[str, Any]]:
    """Recording rules and burn-rate alerts of every objective; `alert` builds an alerting rule (name, expr,
    severity, summary, labels)."""
    sel = f'namespace="{us.namespace}",service="{us.name}"'
    result: list[dict[str, Any]] = []
    for sli, objective in objectives(us).items():
        result += [{"record": record_name(sli, w), "expr": error_ratio(us, sli, w)} for w in WINDOWS]
        allowed = budget(objective)
        for burn in BURNS:
            expr = " or ".join(
                f"({record_name(sli, long)}{{{sel}}} > {factor} * {allowed}"
                f" and {record_name(sli, short)}{{{sel}}} > {factor} * {allowed})"
                for long, short, factor in burn.windows
            )
            name = f"UserService{sli.capitalize()}{burn.suffix}"
            summary = (
                f"{us.namespace}/{us.name} spends the error budget of its {sli} objective ({objective:g}% over "
                f"{PERIOD}) at {burn.rates()} the sustainable rate."
            )
            result.append(alert(name, expr, burn.severity, summary, {"slo": sli}))
    return result
