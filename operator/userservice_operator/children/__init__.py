"""Pure builders (a typed UserService in, child manifests out; one module per kind) and the one table of
child kinds. The table feeds the watches (handlers.py: every kind but the optional ones), the apply step and
its API paths (kube.py), the reconcile order (reconcile.py), the RBAC check (a chart test) and the docs.

Adding a kind: one row here, one builder module, and its rule in rbac.yaml (a cluster-scoped kind's in the
`userservice-operator-cluster` ClusterRole, which is always bound cluster-wide).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from userservice_operator.children import (
    accessbinding,
    deployment,
    hpa,
    migration,
    networkpolicy,
    pdb,
    prometheusrule,
    service,
    serviceaccount,
    servicemonitor,
    subscriptionaccess,
)
from userservice_operator.children.context import Builder


class Phase(enum.Enum):
    SUPPORT = "support"  # applied on every pass, whatever the database and migrations do
    # Applied on every pass once the UserEventSubscriptions naming the UserService are listed: the Role's rules
    # name their signing Secrets.
    SUBSCRIPTIONS = "subscriptions"
    # Applied on every pass after the Role: a RoleBinding's Role must exist when the API server checks that the
    # operator may grant what it binds.
    BINDING = "binding"
    MIGRATION = "migration"  # created once per migration hash, never patched (see children/migration.py)
    WORKLOAD = "workload"  # applied once the rollout plan is known (the database Secret exists)


@dataclass(frozen=True)
class Child:
    kind: str
    api_version: str
    plural: str
    build: Builder
    phase: Phase = Phase.SUPPORT
    # Served by a CRD that may be absent or removed at any time: the kind is skipped while its CRD is missing,
    # and never watched (a watch on a vanishing kind fails kopf as a whole); the CRD check lists it instead.
    optional_api: bool = False
    # Cluster-scoped kinds carry no ownerReference (a namespaced owner is not allowed): their labels name the
    # owner and the operator deletes them itself when the UserService goes (runtime.Controller.collect).
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def crd(self) -> str:
        """The name of the CustomResourceDefinition serving this kind (optional APIs only)."""
        return f"{self.plural}.{self.group}"


# In apply order.
CHILDREN: tuple[Child, ...] = (
    Child("ServiceAccount", "v1", "serviceaccounts", serviceaccount.build),
    Child(
        "ClusterRoleBinding",
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        accessbinding.build,
        namespaced=False,
    ),
    Child(
        "Role", "rbac.authorization.k8s.io/v1", "roles", subscriptionaccess.build_role, Phase.SUBSCRIPTIONS
    ),
    Child(
        "RoleBinding",
        "rbac.authorization.k8s.io/v1",
        "rolebindings",
        subscriptionaccess.build_binding,
        Phase.BINDING,
    ),
    Child("Service", "v1", "services", service.build),
    Child("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", networkpolicy.build),
    Child("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", pdb.build),
    Child(
        "ServiceMonitor",
        "monitoring.coreos.com/v1",
        "servicemonitors",
        servicemonitor.build,
        optional_api=True,
    ),
    Child(
        "PrometheusRule",
        "monitoring.coreos.com/v1",
        "prometheusrules",
        prometheusrule.build,
        optional_api=True,
    ),
    Child("Job", "batch/v1", "jobs", migration.build, Phase.MIGRATION),
    Child("Deployment", "apps/v1", "deployments", deployment.build, Phase.WORKLOAD),
    Child("HorizontalPodAutoscaler", "autoscaling/v2", "horizontalpodautoscalers", hpa.build, Phase.WORKLOAD),
)
OPTIONAL_CRDS: tuple[str, ...] = tuple(c.crd for c in CHILDREN if c.optional_api)
CLUSTER_CHILDREN: tuple[Child, ...] = tuple(c for c in CHILDREN if not c.namespaced)
WATCHED_CHILDREN: tuple[Child, ...] = tuple(c for c in CHILDREN if not c.optional_api)
OPTIONAL_CHILDREN: tuple[Child, ...] = tuple(c for c in CHILDREN if c.optional_api)

__all__ = [
    "CHILDREN",
    "CLUSTER_CHILDREN",
    "OPTIONAL_CHILDREN",
    "OPTIONAL_CRDS",
    "WATCHED_CHILDREN",
    "Child",
    "Phase",
    "accessbinding",
    "deployment",
    "hpa",
    "migration",
    "networkpolicy",
    "pdb",
    "prometheusrule",
    "service",
    "serviceaccount",
    "servicemonitor",
    "subscriptionaccess",
]
