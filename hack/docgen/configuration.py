"""docs/configuration.md, the whole page, from the settings table (service/userservice/config.py)."""

from __future__ import annotations

from hack.docgen.markers import cell
from userservice.config import SETTINGS

PAGE = "docs/configuration.md"


def render(_: str = "") -> str:
    rows = [
        f"| `{s.env}` | {f'`{s.default}`' if s.default else 'unset'} | {cell(s.help)} |"
        for s in SETTINGS.values()
    ]
    return "\n".join(
        [
            "# Configuration",
            "",
            "Every setting of `userservice serve` and `userservice migrate` is an environment variable. "
            "`userservice --help` prints the same list. This page is rendered from `SETTINGS` in "
            "`service/userservice/config.py` by `make docs`; a test fails when it differs.",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )
