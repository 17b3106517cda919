"""The field table of docs/api.md, from the user's fields (service/userservice/domain/fields.py)."""

from __future__ import annotations

from hack.docgen.markers import cell, splice
from userservice.domain.fields import READ_ONLY_FIELDS, WRITABLE_FIELDS

PAGE = "docs/api.md"
BLOCK = "user fields"


def render(page: str) -> str:
    rows = [f"| `{f.name}` | {cell(f.description)} |" for f in WRITABLE_FIELDS]
    read_only = ", ".join(f"`{name}`" for name in READ_ONLY_FIELDS)
    table = [
        "| field | rules |",
        "|---|---|",
        *rows,
        f"| {read_only} | Read-only: set by the server, refused in input. |",
    ]
    return splice(page, BLOCK, "\n".join(table))
