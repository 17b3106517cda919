"""The typed UserService: frozen dataclasses built once from the manifest, holding every default once.

Field names are the CRD's in snake_case (the JSON name is derived, or given as `json` metadata where the CRD
spells it otherwise). A dataclass default is the value used when the manifest lacks the field; the API server
fills in the CRD schema's defaults first, and a unit test checks the two agree. Builders (children/*.py) take
`UserService`, never the raw dict.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Manifest = dict[str, Any]
T = typing.TypeVar("T")


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str = "url"


@dataclass(frozen=True)
class CloudNativePGRef:
    """A CloudNativePG Cluster in the same namespace: its `<cluster>-app` Secret and `<cluster>-ro` Service."""

    cluster_name: str


@dataclass(frozen=True)
class DatabaseSpec:
    """Exactly one of secret_ref and cloud_native_pg (the CRD's CEL rule)."""

    secret_ref: SecretRef | None = None
    cloud_native_pg: CloudNativePGRef | None = field(default=None, metadata={"json": "cloudNativePG"})
    max_connections: int | None = None


@dataclass(frozen=True)
class AutoscalingSpec:
    max_replicas: int
    enabled: bool = True
    min_replicas: int = 2
    target_cpu_utilization_percentage: int = field(
        default=80, metadata={"json": "targetCPUUtilizationPercentage"}
    )
    target_requests_per_second: int | None = None
    behavior: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class MigrationsSpec:
    enabled: bool = True
    backoff_limit: int = 2
    active_deadline_seconds: int = 600


@dataclass(frozen=True)
class HttpSpec:
    port: int = 8080


@dataclass(frozen=True)
class GrpcSpec:
    port: int = 50051


@dataclass(frozen=True)
class ManagementSpec:
    port: int = 9090


@dataclass(frozen=True)
class TlsSpec:
    secret_name: str


@dataclass(frozen=True)
class NetworkPolicySpec:
    enabled: bool = True


# Every pod in the UserService's own namespace (a peer with only a podSelector stays in the policy's namespace).
SAME_NAMESPACE: tuple[Mapping[str, Any], ...] = (MappingProxyType({"podSelector": MappingProxyType({})}),)


@dataclass(frozen=True)
class AccessSpec:
    peers: tuple[Mapping[str, Any], ...] = field(default=SAME_NAMESPACE, metadata={"json": "from"})
    network_policy: NetworkPolicySpec = field(default_factory=NetworkPolicySpec)


@dataclass(frozen=True)
class AuthSpec:
    audience: str | None = None  # None: userservice.io/<namespace>/<name>
    cache_seconds: int = 10


@dataclass(frozen=True)
class ServiceMonitorSpec:
    enabled: bool = True
    interval: str = "30s"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PrometheusRuleSpec:
    enabled: bool = True
    labels: Mapping[str, str] | None = None  # None: the ServiceMonitor's


# The namespace the one-node cluster's (and kube-prometheus-stack's usual) Prometheus runs in.
MONITORING_NAMESPACES: Mapping[str, Any] = MappingProxyType(
    {"matchLabels": MappingProxyType({"kubernetes.io/metadata.name": "monitoring"})}
)


@dataclass(frozen=True)
class MonitoringSpec:
    namespace_selector: Mapping[str, Any] = field(default_factory=lambda: MONITORING_NAMESPACES)
    service_monitor: ServiceMonitorSpec = field(default_factory=ServiceMonitorSpec)
    prometheus_rule: PrometheusRuleSpec = field(default_factory=PrometheusRuleSpec)

    def rule_labels(self) -> Mapping[str, str]:
        """The PrometheusRule's labels; unset, the ServiceMonitor's (a Prometheus usually selects both alike)."""
        labels = self.prometheus_rule.labels
        return self.service_monitor.labels if labels is None else labels


@dataclass(frozen=True)
class AvailabilityObjective:
    objective: float  # percent of requests answered without a server error over the SLO period


@dataclass(frozen=True)
class LatencyObjective:
    objective: float  # percent of unary requests answered within threshold_seconds over the SLO period
    threshold_seconds: float  # one of the service's histogram bucket bounds (the CRD checks it)


@dataclass(frozen=True)
class SLOSpec:
    availability: AvailabilityObjective | None = None
    latency: LatencyObjective | None = None


@dataclass(frozen=True)
class PodDisruptionBudgetSpec:
    enabled: bool = True
    min_available: int | str | None = None
    max_unavailable: int | str | None = None


@dataclass(frozen=True)
class PodSpec:
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    topology_spread_constraints: tuple[Mapping[str, Any], ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)

    def scheduling(self) -> dict[str, Any]:
        """nodeSelector, tolerations, affinity and topologySpreadConstraints (only those set)."""
        fields = {
            "nodeSelector": dict(self.node_selector),
            "tolerations": list(self.tolerations),
            "affinity": dict(self.affinity),
            "topologySpreadConstraints": list(self.topology_spread_constraints),
        }
        return {k: v for k, v in fields.items() if v}


DEFAULT_RESOURCES: Mapping[str, Any] = MappingProxyType(
    {
        "requests": MappingProxyType({"cpu": "100m", "memory": "128Mi"}),
        "limits": MappingProxyType({"memory": "256Mi"}),
    }
)


@dataclass(frozen=True)
class UserServiceSpec:
    image: str
    database: DatabaseSpec
    image_pull_policy: str = "IfNotPresent"
    replicas: int = 2
    autoscaling: AutoscalingSpec | None = None
    resources: Mapping[str, Any] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_RESOURCES.items()}
    )
    migrations: MigrationsSpec = field(default_factory=MigrationsSpec)
    http: HttpSpec = field(default_factory=HttpSpec)
    grpc: GrpcSpec = field(default_factory=GrpcSpec)
    management: ManagementSpec = field(default_factory=ManagementSpec)
    tls: TlsSpec | None = None
    access: AccessSpec = field(default_factory=AccessSpec)
    auth: AuthSpec = field(default_factory=AuthSpec)
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
    pod_disruption_budget: PodDisruptionBudgetSpec = field(default_factory=PodDisruptionBudgetSpec)
    slo: SLOSpec = field(default_factory=SLOSpec)
    pod: PodSpec = field(default_factory=PodSpec)
    env: tuple[Mapping[str, Any], ...] = ()
    log_level: str = "info"
    shutdown_grace_period_seconds: int = 20
    pre_stop_sleep_seconds: int = 5

    def tls_enabled(self) -> bool:
        return self.tls is not None

    def autoscaled(self) -> bool:
        return self.autoscaling is not None and self.autoscaling.enabled

    def termination_grace_seconds(self) -> int:
        """Drain deadline plus the preStop pause plus a margin for the process to exit."""
        return self.shutdown_grace_period_seconds + self.pre_stop_sleep_seconds + 5


@dataclass(frozen=True)
class UserService:
    """The identity of one UserService and its typed spec (status stays with the raw body)."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: UserServiceSpec

    @classmethod
    def from_manifest(cls, body: Mapping[str, Any]) -> UserService:
        meta = body["metadata"]
        return cls(
            name=str(meta["name"]),
            namespace=str(meta["namespace"]),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0)),
            spec=parse(UserServiceSpec, body.get("spec") or {}),
        )

    def audience(self) -> str:
        """The audience a caller's projected token must carry."""
        return self.spec.auth.audience or f"userservice.io/{self.namespace}/{self.name}"


# --- the one generic parser: JSON (the manifest) to the dataclasses above ----------------------------


def json_name(f: dataclasses.Field[Any]) -> str:
    """The CRD's name of a dataclass field: `json` metadata, else camelCase of the field name."""
    spelled = f.metadata.get("json")
    if spelled:
        return str(spelled)
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), f.name)


def convert(tp: Any, value: Any) -> Any:
    """`value` (from JSON) as type `tp`: dataclasses recursively, lists as tuples, the rest as it is."""
    if value is None:
        return None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return parse(tp, value)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return convert(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        return tuple(convert(typing.get_args(tp)[0], v) for v in value)
    if tp in (int, float, str, bool):
        return tp(value)
    return value


def parse(cls: type[T], data: Mapping[str, Any]) -> T:
    """An instance of dataclass `cls` from its JSON form; absent fields take the dataclass defaults."""
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: convert(hints[f.name], data[json_name(f)])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if data.get(json_name(f)) is not None
    }
    return cls(**kwargs)


def to_json(obj: Any) -> Any:
    """The JSON form of a parsed value (the inverse of `parse`; unset optional fields are left out)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            json_name(f): to_json(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not None
        }
    if isinstance(obj, tuple | list):
        return [to_json(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_json(v) for k, v in obj.items()}
    return obj
