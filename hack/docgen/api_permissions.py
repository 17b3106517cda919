"""The permission table of docs/api.md, from PERMISSIONS (service/userservice/access/permissions.py) and the REST
routes that name each operation (service/userservice/api/http.py)."""

from __future__ import annotations

from hack.docgen.markers import splice
from userservice.access.permissions import GROUP, PERMISSIONS
from userservice.api.http import rest_operations

PAGE = "docs/api.md"
BLOCK = "permissions"


def render(page: str) -> str:
    routes = rest_operations()
    rows = [
        f"| {', '.join(f'`{route}`' for route in routes[operation])} | `{operation}` | "
        f"`{permission.resource_name}` | `{permission.verb}` |"
        for operation, permission in PERMISSIONS.items()
    ]
    table = [f"| REST | gRPC | resource (group `{GROUP}`) | verb |", "|---|---|---|---|", *rows]
    return splice(page, BLOCK, "\n".join(table))
