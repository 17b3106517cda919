"""The connection budget: how many PostgreSQL connections each pod's pools may open so that the whole instance
never holds more than spec.database.maxConnections, even at its peak.

The peak is twice the most pods the Deployment runs (autoscaling.maxReplicas, or replicas), plus the migration
Job. Twice, because a rolling update's old pods keep their connections while they drain (up to the termination
grace period) and Kubernetes does not count terminating pods against maxSurge: new pods keep starting while old
ones are still shutting down. Within one rollout there are never more than the target's count of new pods and
of old pods, so 2 x pods bounds it, surge included (an e2e test counting sessions under load found 29 of a
budget of 21 sized for pods plus surge only). Each pod holds its pool (DB_POOL_MAX) and one connection of its
own (the event feed's LISTEN). A replica is another server with its own max_connections; each pod's pool per
replica (DB_READ_POOL_MAX) gets the same size, so the budget holds on every server of the cluster.

The CRD refuses an infeasible budget with `feasibility_rule()` (a unit test keeps crd.yaml equal to it); the
operator reports one that got past it (created before the rule, say) with `problem()`.
"""

from __future__ import annotations

from userservice_operator.spec import UserServiceSpec

MIGRATION_JOB_CONNECTIONS = 1  # `userservice migrate` holds one connection
POD_OWN_CONNECTIONS = 1  # the event feed's listening connection, outside the pool
MIN_POOL = 2  # one for a request, one for the maintenance and replica probes beside it
ROLLOUT_FACTOR = 2  # old pods draining beside their replacements


class BudgetTooSmall(ValueError):
    pass


def peak_pods(spec: UserServiceSpec) -> int:
    pods = (
        spec.autoscaling.max_replicas if spec.autoscaling is not None and spec.autoscaled() else spec.replicas
    )
    return ROLLOUT_FACTOR * pods


def pool_size(spec: UserServiceSpec) -> int | None:
    """DB_POOL_MAX (and DB_READ_POOL_MAX) for each pod; None without a budget (the service's defaults) or
    without pods (replicas 0: nothing to size until it scales up, which recomputes it)."""
    budget = spec.database.max_connections
    peak = peak_pods(spec)
    if budget is None or peak == 0:
        return None
    size = (budget - MIGRATION_JOB_CONNECTIONS) // peak - POD_OWN_CONNECTIONS
    if size < MIN_POOL:
        need = peak * (MIN_POOL + POD_OWN_CONNECTIONS) + MIGRATION_JOB_CONNECTIONS
        raise BudgetTooSmall(
            f"spec.database.maxConnections {budget} cannot give each of up to {peak} pods (twice maxReplicas: a"
            f" rolling update's old pods drain beside the new) a pool of {MIN_POOL}: it needs at least {need}"
        )
    return size


def problem(spec: UserServiceSpec) -> str | None:
    try:
        pool_size(spec)
    except BudgetTooSmall as exc:
        return str(exc)
    return None


def feasibility_rule() -> str:
    """The CEL rule on spec that refuses what `pool_size` would."""
    pods = (
        "(has(self.autoscaling) && self.autoscaling.enabled ? self.autoscaling.maxReplicas : self.replicas)"
    )
    peak = f"{ROLLOUT_FACTOR} * {pods}"
    return (
        "!has(self.database.maxConnections) || self.database.maxConnections >= "
        f"{peak} * {MIN_POOL + POD_OWN_CONNECTIONS} + {MIGRATION_JOB_CONNECTIONS}"
    )
