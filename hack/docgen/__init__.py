"""Reference docs rendered from their single sources. `make docs` (python -m hack.docgen) writes them; a unit
test fails when a committed page differs from what its renderer makes. One module per page."""

from __future__ import annotations

from collections.abc import Callable

from hack.docgen import (
    adapter_rules,
    api_fields,
    api_permissions,
    chart_rules,
    configuration,
    operator_children,
    operator_spec,
    subscription_spec,
)

# (page, render): render takes the committed page and returns it with its generated part current.
PAGES: tuple[tuple[str, Callable[[str], str]], ...] = (
    (configuration.PAGE, configuration.render),
    (api_fields.PAGE, api_fields.render),
    (api_permissions.PAGE, api_permissions.render),
    (operator_spec.PAGE, operator_spec.render),
    (operator_children.PAGE, operator_children.render),
    (subscription_spec.PAGE, subscription_spec.render),
    (adapter_rules.CHART_FILE, adapter_rules.render_chart_file),
    (adapter_rules.PAGE, adapter_rules.render_page),
    (chart_rules.CHART_FILE, chart_rules.render_chart_file),
)
