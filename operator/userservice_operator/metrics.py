"""Prometheus metrics of the operator, in a registry owned by the running operator (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "userservice_operator_reconciles",
            "Reconcile passes by result (success, retry, error).",
            ["result"],
            registry=self.registry,
        )
        for result in ("success", "retry", "error"):
            self.reconciles.labels(result)
        self.reconcile_duration = Histogram(
            "userservice_operator_reconcile_duration_seconds",
            "Duration of one reconcile pass.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.managed = Gauge(
            "userservice_operator_managed_resources",
            "UserService resources currently managed.",
            registry=self.registry,
        )
        self.api_errors = Counter(
            "userservice_operator_api_errors",
            "Failed Kubernetes API requests by verb and HTTP status (or 'connection').",
            ["verb", "code"],
            registry=self.registry,
        )
        self.child_writes = Counter(
            "userservice_operator_child_writes",
            "Server-side applies of child objects by kind and action.",
            ["kind", "action"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "userservice_operator_leader",
            "1 while this replica holds the leader Lease and acts, else 0.",
            registry=self.registry,
        )
