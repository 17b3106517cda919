"""Who a request is from, as the use cases need it: passed down by the adapters, never read from a context."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    """The CloudEvents authcontext recorded with each change the request makes (`authtype`, `authid`; both None for
    the service's own work), and the subject its failed password checks count against."""

    authtype: str | None
    authid: str | None
    throttle_key: str
