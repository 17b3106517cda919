"""Prometheus metrics. One registry per service instance (no module-level state), served at /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Push delivery, from a change's transaction to its sink's 2xx: retries and outages make it span minutes.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The HTTP methods kept as label values; any other (clients may send anything) is counted as "other", so a
# client cannot make unbounded series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The `method` label value of an HTTP request."""
    return method if method in HTTP_METHODS else "other"


class _PoolCollector(Collector):
    def __init__(self, read: Callable[[], tuple[int, int, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size, idle, maximum = self._read()
        family = GaugeMetricFamily(
            "userservice_db_pool_connections", "Database pool connections by state.", labels=["state"]
        )
        family.add_metric(["in_use"], size - idle)
        family.add_metric(["idle"], idle)
        yield family
        yield GaugeMetricFamily(
            "userservice_db_pool_max_connections", "Most connections the pool may open.", value=maximum
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "userservice_http_requests",
            "HTTP requests by route, method and status code.",
            ["method", "route", "code"],
            registry=r,
        )
        self.http_latency = Histogram(
            "userservice_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.grpc_requests = Counter(
            "userservice_grpc_requests",
            "gRPC calls by method and status code.",
            ["method", "code"],
            registry=r,
        )
        self.grpc_latency = Histogram(
            "userservice_grpc_request_duration_seconds",
            "gRPC call latency (streams: until the stream ends).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.user_changes = Counter(
            "userservice_user_changes",
            "Changes to users: created, updated, deleted, undeleted, erased.",
            ["operation"],
            registry=r,
        )
        self.events_appended = Counter(
            "userservice_events_appended", "Change events written to the outbox.", ["type"], registry=r
        )
        self.watchers = Gauge(
            "userservice_event_watchers", "Connected event watchers.", ["transport"], registry=r
        )
        self.watchers_dropped = Counter(
            "userservice_event_watchers_dropped",
            "Event watchers cut off: slow (fell a whole buffer behind), stalled (their client stopped reading) or error (database).",
            ["reason"],
            registry=r,
        )
        self.event_feed_queries = Counter(
            "userservice_event_feed_queries",
            "Queries the event feed sent to the database: horizon, live (the one reader), catch_up (a watcher"
            " starting behind the reader).",
            ["kind"],
            registry=r,
        )
        self.event_feed_stall = Gauge(
            "userservice_event_feed_stall_seconds",
            "Age of the oldest transaction of this database holding the event feed's visibility horizon back"
            " (events committed after it wait for it); 0 when nothing holds it or nobody watches.",
            registry=r,
        )
        self.password_hash_latency = Histogram(
            "userservice_password_hash_duration_seconds",
            "Time to hash or verify a password (argon2id).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.password_verifications = Counter(
            "userservice_password_verifications",
            "Password checks by outcome: success, wrong_password, unknown_login, locked (refused unchecked).",
            ["outcome"],
            registry=r,
        )
        self.password_rehashes = Counter(
            "userservice_password_rehashes",
            "Hashes upgraded to the current argon2id after a successful check, by the scheme they had.",
            ["scheme"],
            registry=r,
        )
        self.breach_checks = Counter(
            "userservice_breach_checks",
            "New passwords checked against the breach range service: clean, breached, error.",
            ["outcome"],
            registry=r,
        )
        self.http_connections_open = Gauge(
            "userservice_http_connections_open", "Open REST connections.", registry=r
        )
        self.http_connections_closed = Counter(
            "userservice_http_connections_closed",
            "REST connections the server closed: header_timeout (no complete request head in time), "
            "idle_timeout (kept alive without a request), cap (over HTTP_MAX_CONNECTIONS), malformed (not HTTP).",
            ["reason"],
            registry=r,
        )
        self.ready = Gauge("userservice_ready", "1 while the instance reports ready.", registry=r)
        self.db_reads = Counter(
            "userservice_db_reads",
            "Reads (get, list, search) by the pool that served them (primary, or a replica's index in"
            " DATABASE_READ_URL) and why: replica; on the primary no_token (READS_WITHOUT_TOKEN=primary),"
            " no_replica (none in rotation), token_wait_expired, replica_unavailable.",
            ["pool", "reason"],
            registry=r,
        )
        self.replica_in_rotation = Gauge(
            "userservice_replica_in_rotation",
            "1 while the replica (index in DATABASE_READ_URL) serves reads.",
            ["replica"],
            registry=r,
        )
        self.replica_lag_seconds = Gauge(
            "userservice_replica_lag_seconds",
            "How long ago the primary first wrote past the replica's replay position (0 when caught up).",
            ["replica"],
            registry=r,
        )
        self.replica_lag_bytes = Gauge(
            "userservice_replica_lag_bytes",
            "WAL the replica has yet to replay, from the primary's last sampled position.",
            ["replica"],
            registry=r,
        )
        # Push delivery: one label value per UserEventSubscription of the instance (the series of a deleted
        # subscription's lag are removed; counters stay until the process restarts).
        self.subscription_deliveries = Counter(
            "userservice_subscription_deliveries",
            "Attempts to POST an event to a subscription's sink by outcome: delivered (2xx), throttled (429 or 503),"
            " rejected (any other status, redirects included), unreachable (no connection or no answer in time),"
            " refused (the sink guard), no_signing_key (the signing Secret or key is missing or malformed).",
            ["subscription", "outcome"],
            registry=r,
        )
        self.subscription_latency = Histogram(
            "userservice_subscription_delivery_latency_seconds",
            "From the change's transaction to its sink's 2xx, retries included.",
            ["subscription"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.subscription_lag_events = Gauge(
            "userservice_subscription_lag_events",
            "Events of the wanted types committed and not yet delivered (reported by the replica delivering it).",
            ["subscription"],
            registry=r,
        )
        self.subscription_lag_seconds = Gauge(
            "userservice_subscription_lag_seconds",
            "Age of the oldest event not yet delivered (0 when none waits).",
            ["subscription"],
            registry=r,
        )
        # Label children bound once per label set: .labels() validates and locks on every call.
        self._http_bound: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._grpc_bound: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def http_request_done(self, method: str, route: str, code: int, seconds: float) -> None:
        """Count and time one HTTP request (`route` is a route template, so the label sets stay bounded)."""
        method = method_label(method)
        bound = self._http_bound.get((method, route, code))
        if bound is None:
            bound = self._http_bound[(method, route, code)] = (
                self.http_requests.labels(method, route, str(code)),
                self.http_latency.labels(method, route),
            )
        bound[0].inc()
        bound[1].observe(seconds)

    def grpc_call_done(self, method: str, code: str, seconds: float) -> None:
        """Count and time one gRPC call."""
        bound = self._grpc_bound.get((method, code))
        if bound is None:
            bound = self._grpc_bound[(method, code)] = (
                self.grpc_requests.labels(method, code),
                self.grpc_latency.labels(method),
            )
        bound[0].inc()
        bound[1].observe(seconds)

    def watch_pool(self, read: Callable[[], tuple[int, int, int]]) -> None:
        """Registers pool gauges read at scrape time: (size, idle, max)."""
        self.registry.register(_PoolCollector(read))
