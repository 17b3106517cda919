"""Pure builders: a UserService (dict) in, child manifests (dicts) out. One module per kind."""

from userservice_operator.children import (
    deployment,
    hpa,
    migration,
    pdb,
    prometheusrule,
    service,
    servicemonitor,
)

__all__ = ["deployment", "hpa", "migration", "pdb", "prometheusrule", "service", "servicemonitor"]
