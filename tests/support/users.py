"""Valid user payloads, unique per call."""

from __future__ import annotations

import itertools
import uuid

_counter = itertools.count()


def new_user(**overrides: object) -> dict[str, object]:
    # Fixed width: hypothesis strategies built around a valid value must see the same length every time.
    n = f"{next(_counter):06d}{uuid.uuid4().hex[:6]}"
    body: dict[str, object] = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "nickname": f"ada{n}",
        "email": f"ada{n}@example.com",
        "country": "GB",
        "password": "correct horse battery staple",
    }
    body.update(overrides)
    return body
