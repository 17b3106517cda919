"""Skip-or-fail for tests that need a real part (a binary, an engine) the machine may lack.

On a developer laptop a missing part skips the test with the reason. In CI (`CI=true`) nothing may be
skipped for that reason: the same call fails the test, so a green CI always means the real part ran.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip (laptop) or fail (CI) the calling test unless `condition` holds."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)
