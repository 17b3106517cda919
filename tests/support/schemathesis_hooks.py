"""schemathesis checks of this service's own (loaded by the CLI through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def problem_json_on_client_errors(ctx: Any, response: Any, case: Any) -> None:
    """Every 4xx is an RFC 9457 problem whose status is the response's."""
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), (
            f"{response.status_code} as {content_type}"
        )
        assert response.json()["status"] == response.status_code
