"""UserEventSubscription: the typed spec read from its manifest, where the sink is, the retry schedule, which
sink addresses may be reached, and the status a subscription reports. Pure: no I/O.

The CRD (operator/userservice_operator/subscription_crd.yaml) validates and defaults the spec before it is
stored, so a manifest read back from the API server is well-formed; `from_manifest` still refuses a broken one
with a message naming the field, because this process must never deliver on a guess.
"""

from __future__ import annotations

import email.utils
import ipaddress
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from userservice.domain.events import EVENT_TYPES, Cursor, StartAt, parse_start

API_GROUP = "userservice.io"
API_VERSION = "v1alpha1"
PLURAL = "usereventsubscriptions"
KIND = "UserEventSubscription"

# Ready's reasons.
DELIVERING = "Delivering"
SINK_UNREACHABLE = "SinkUnreachable"
SINK_REJECTING = "SinkRejecting"
SIGNING_SECRET_MISSING = "SigningSecretMissing"  # noqa: S105 # a condition reason, not a secret
EVENTS_EXPIRED = "EventsExpired"
SINK_REFUSED = "SinkRefused"  # the sink resolves to an address the guard refuses
WAITING = "Waiting"  # no replica has taken the subscription yet

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BadSubscription(ValueError):
    """The manifest cannot be delivered as it stands (message names the field)."""


@dataclass(frozen=True)
class Delivery:
    timeout: float = 10.0
    min_backoff: float = 1.0
    max_backoff: float = 300.0
    max_in_flight: int = 1


@dataclass(frozen=True)
class Subscription:
    namespace: str
    name: str
    uid: str
    generation: int
    user_service: str
    url: str  # where events are POSTed
    allow_outside_cluster: bool
    types: frozenset[str] | None  # None: every type
    secret_name: str
    secret_key: str
    start_at: Cursor | StartAt
    delivery: Delivery = field(default_factory=Delivery)

    def wants(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types


def _get(node: Any, path: str) -> Any:
    value = node
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise BadSubscription(f"{path} is missing")
        value = value[part]
    return value


def sink_url(namespace: str, sink: dict[str, Any]) -> str:
    """spec.sink as a URL: a Service reference becomes its cluster DNS name."""
    if "ref" in sink:
        ref = sink["ref"]
        path = str(ref.get("path") or "/")
        return f"http://{ref['name']}.{namespace}.svc:{int(ref.get('port', 80))}{path}"
    uri = str(sink.get("uri") or "")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadSubscription("spec.sink.uri must be an http:// or https:// URL with a host")
    return uri


def shown_url(url: str) -> str:
    """The sink for status, logs and metrics: scheme, host, port and path; never userinfo or a query, which
    may carry credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def from_manifest(obj: dict[str, Any]) -> Subscription:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    sink = _get(spec, "sink")
    delivery = spec.get("delivery") or {}
    types = spec.get("types")
    if types is not None and not set(types) <= set(EVENT_TYPES):
        raise BadSubscription(f"spec.types names unknown types: {sorted(set(types) - set(EVENT_TYPES))}")
    return Subscription(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation", 0)),
        user_service=str(_get(spec, "userService")),
        url=sink_url(str(meta.get("namespace", "")), sink),
        allow_outside_cluster=bool(sink.get("allowOutsideCluster", False)),
        types=None if types is None else frozenset(types),
        secret_name=str(_get(spec, "signingSecretRef.name")),
        secret_key=str(_get(spec, "signingSecretRef.key")),
        start_at=parse_start(str(spec.get("startAt", "now")), "spec.startAt"),
        delivery=Delivery(
            timeout=float(delivery.get("timeoutSeconds", Delivery.timeout)),
            min_backoff=float(delivery.get("minBackoffSeconds", Delivery.min_backoff)),
            max_backoff=float(delivery.get("maxBackoffSeconds", Delivery.max_backoff)),
            max_in_flight=int(delivery.get("maxInFlight", Delivery.max_in_flight)),
        ),
    )


def parse_networks(text: str) -> tuple[Network, ...]:
    """CIDRs separated by commas (SUBSCRIPTION_CLUSTER_NETWORKS)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def address_refused(address: Address, cluster: tuple[Network, ...], outside_allowed: bool) -> str | None:
    """Why a sink may not be reached at `address`, or None. Inside the cluster's networks: allowed. Otherwise only
    a global (public) address, and only with spec.sink.allowOutsideCluster: never loopback, link-local (cloud
    metadata endpoints), private ranges outside the cluster's, multicast or unspecified addresses."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in cluster):
        return None
    if not address.is_global or address.is_multicast:
        return f"{address} is neither in the cluster's networks nor a public address"
    if not outside_allowed:
        return f"{address} is outside the cluster's networks (spec.sink.allowOutsideCluster is false)"
    return None


def backoff(attempt: int, low: float, high: float, rng: random.Random | None = None) -> float:
    """Seconds before retry `attempt` (1 for the first retry): exponential from `low`, capped at `high`, with
    jitter over the upper half of the step so replicas and subscriptions do not retry in lockstep."""
    step = min(high, low * 2.0 ** min(attempt - 1, 62))
    return max(low, min(high, (rng or random).uniform(step / 2, step)))


def retry_after(value: str | None, now: datetime, low: float, high: float) -> float | None:
    """Retry-After (delay-seconds or an HTTP-date) in seconds, kept within [low, high]; None when absent or
    unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return max(low, min(high, seconds))


@dataclass(frozen=True)
class Progress:
    """What the deliverer knows of one subscription, turned into its status."""

    cursor: Cursor
    lag_events: int
    lag_seconds: float
    last_delivered: datetime | None
    delivered: int
    failed: int
    expired: int
    expired_generation: int | None  # the generation at the last expiry (EventsExpired until the spec changes)
    problem: tuple[str, str] | None  # (reason, message) of the last failure; None when delivering


def ready_condition(sub: Subscription, progress: Progress) -> tuple[str, str, str]:
    """(status, reason, message) of Ready."""
    if progress.problem is not None:
        return "False", *progress.problem
    if progress.expired and progress.expired_generation == sub.generation:
        return (
            "False",
            EVENTS_EXPIRED,
            f"{progress.expired} events passed their retention before they were delivered; delivery goes on"
            " after them (any change to the spec acknowledges this)",
        )
    return "True", DELIVERING, "events are delivered"


def status(sub: Subscription, progress: Progress, old: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The status to write; Ready's lastTransitionTime moves only when its status changes."""
    state, reason, message = ready_condition(sub, progress)
    before = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), None)
    changed = before is None or before.get("status") != state
    return {
        "observedGeneration": sub.generation,
        "sink": shown_url(sub.url),
        "cursor": str(progress.cursor),
        "lag": {"events": progress.lag_events, "seconds": round(progress.lag_seconds, 3)},
        **(
            {"lastDeliveredTime": _time(progress.last_delivered)}
            if progress.last_delivered is not None
            else {}
        ),
        "deliveries": progress.delivered,
        "failures": progress.failed,
        "expiredEvents": progress.expired,
        "conditions": [
            {
                "type": "Ready",
                "status": state,
                "reason": reason,
                "message": message,
                "observedGeneration": sub.generation,
                "lastTransitionTime": _time(now) if changed else before["lastTransitionTime"],  # type: ignore[index]
            }
        ],
    }


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether writing `new` over `old` changes anything but the lag's seconds (which move every moment)."""

    def settled(status: dict[str, Any]) -> dict[str, Any]:
        lag = dict(status.get("lag") or {})
        lag.pop("seconds", None)
        return {**status, "lag": lag}

    return settled(old) != settled(new)
