"""Reading the error budgets of spec.slo from Prometheus (the operator's --prometheus-url), for the status.

A failed or empty query leaves that budget out of the status: it is never guessed."""

from __future__ import annotations

import logging
import math

import aiohttp

from userservice_operator.children import slo
from userservice_operator.spec import UserService

log = logging.getLogger(__name__)
TIMEOUT = aiohttp.ClientTimeout(total=10)


async def query_value(base_url: str, expr: str) -> float | None:
    """The value of an instant query with one series in its result; None when there is none or it failed."""
    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.get(url, params={"query": expr}) as response,
        ):
            response.raise_for_status()
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("Prometheus query at %s failed: %s", base_url, exc)
        return None
    result = (body.get("data") or {}).get("result") or []
    if len(result) != 1:
        return None
    value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None


async def error_budgets(base_url: str, us: UserService) -> dict[str, float]:
    """SLI -> share of its 30-day error budget left, for each objective Prometheus has data for."""
    budgets: dict[str, float] = {}
    for sli, objective in slo.objectives(us).items():
        ratio = await query_value(base_url, slo.error_ratio(us, sli, slo.PERIOD))
        if ratio is not None:
            budgets[sli] = slo.budget_remaining(ratio, objective)
    return budgets
