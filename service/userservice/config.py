"""Configuration from environment variables. Every setting has a documented default (docs/configuration.md
is generated from SETTINGS by a test, so the two cannot drift)."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str


# name -> (environment variable, default, description). Order is the documentation order.
SETTINGS: dict[str, Setting] = {
    "database_url": Setting(
        "DATABASE_URL", "", "PostgreSQL DSN, e.g. postgresql://user:pass@host:5432/db. Required."
    ),
    "http_host": Setting("HTTP_HOST", "0.0.0.0", "Address the REST server binds."),  # noqa: S104
    "http_port": Setting("HTTP_PORT", "8080", "REST port."),
    "grpc_host": Setting("GRPC_HOST", "0.0.0.0", "Address the gRPC server binds."),  # noqa: S104
    "grpc_port": Setting("GRPC_PORT", "50051", "gRPC port."),
    "management_host": Setting(
        "MANAGEMENT_HOST",
        "0.0.0.0",  # noqa: S104
        "Address the management server (/healthz, /readyz, /metrics) binds.",
    ),
    "management_port": Setting(
        "MANAGEMENT_PORT", "9090", "Management port: /healthz, /readyz and /metrics, never authenticated."
    ),
    "tls_cert_file": Setting(
        "TLS_CERT_FILE",
        "",
        "PEM certificate chain; with TLS_KEY_FILE, REST, gRPC and the management port serve TLS. Re-read when the file changes (rotation without a restart).",
    ),
    "tls_key_file": Setting("TLS_KEY_FILE", "", "PEM private key of TLS_CERT_FILE."),
    "auth_mode": Setting(
        "AUTH_MODE",
        "kubernetes",
        "kubernetes: every API call needs a ServiceAccount token (TokenReview) allowed by RBAC (SubjectAccessReview). none: no checks, only with every listener on a loopback address (development).",
    ),
    "auth_audience": Setting(
        "AUTH_AUDIENCE",
        "",
        "Audience a token must carry, e.g. userservice.io/<namespace>/<name>. Required in kubernetes mode.",
    ),
    "auth_namespace": Setting(
        "AUTH_NAMESPACE",
        "",
        "Namespace the SubjectAccessReviews ask about. Required in kubernetes mode; in a pod it defaults to the pod's namespace.",
    ),
    "auth_cache_seconds": Setting(
        "AUTH_CACHE_SECONDS",
        "10",
        "How long an authentication or authorization verdict is reused (a token's verdict never outlives the token).",
    ),
    "auth_cache_size": Setting("AUTH_CACHE_SIZE", "10000", "Most cached verdicts (each cache)."),
    "kubeconfig": Setting(
        "KUBECONFIG",
        "",
        "Kubeconfig of the Kubernetes API used outside a pod (tests, laptops); in a pod the in-cluster ServiceAccount is used.",
    ),
    "db_pool_max": Setting("DB_POOL_MAX", "10", "Most connections the pool opens."),
    "db_command_timeout": Setting(
        "DB_COMMAND_TIMEOUT_SECONDS", "10", "Longest a single SQL statement may take."
    ),
    "migrate_on_start": Setting(
        "MIGRATE_ON_START", "false", "Apply migrations before serving (else run `userservice migrate`)."
    ),
    "log_level": Setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR."),
    "log_format": Setting("LOG_FORMAT", "json", "json (one object per line) or text."),
    "access_log_sample": Setting(
        "ACCESS_LOG_SAMPLE",
        "0.01",
        "Share of fast, successful REST reads that get an access log line (0-1; 1: every request). Every error, every write and every request slower than ACCESS_LOG_SLOW_SECONDS always gets one; the metrics count every request.",
    ),
    "access_log_slow_seconds": Setting(
        "ACCESS_LOG_SLOW_SECONDS", "0.1", "A REST request at least this slow always gets an access log line."
    ),
    "shutdown_delay": Setting(
        "SHUTDOWN_DELAY_SECONDS",
        "0",
        "On SIGTERM: keep serving, already not-ready, this long before closing listeners (lets endpoints update).",
    ),
    "shutdown_grace": Setting(
        "SHUTDOWN_GRACE_SECONDS",
        "20",
        "On SIGTERM: how long in-flight requests and streams may take to finish.",
    ),
    "max_body_bytes": Setting("MAX_BODY_BYTES", "65536", "Largest accepted request body (413 above)."),
    "batch_max_body_bytes": Setting(
        "BATCH_MAX_BODY_BYTES",
        "2097152",
        "Largest accepted body of POST /v1/users:batchCreate (up to 1,000 users; 413 above).",
    ),
    "http_header_timeout": Setting(
        "HTTP_HEADER_TIMEOUT_SECONDS",
        "10",
        "A REST connection must send a complete request head this soon after it opens or its next request begins; a request being served is never cut by it.",
    ),
    "http_idle_timeout": Setting(
        "HTTP_IDLE_TIMEOUT_SECONDS",
        "75",
        "A kept-alive REST connection with no request is closed after this long.",
    ),
    "http_max_connections": Setting(
        "HTTP_MAX_CONNECTIONS", "1000", "Most open REST connections; one more is answered 503 and closed."
    ),
    "idempotency_ttl": Setting(
        "IDEMPOTENCY_TTL_SECONDS", "86400", "How long an Idempotency-Key / request_id is remembered."
    ),
    "event_retention": Setting(
        "EVENT_RETENTION_SECONDS",
        "604800",
        "How long change events stay readable once every watcher could see them (older cursors: 410).",
    ),
    "event_poll_interval": Setting(
        "EVENT_POLL_SECONDS", "2", "The event feed re-checks the outbox this often even without a NOTIFY."
    ),
    "event_watchers_max": Setting(
        "EVENT_WATCHERS_MAX",
        "1000",
        "Most event watchers (SSE and gRPC together) one process serves; more get 503 / RESOURCE_EXHAUSTED.",
    ),
    "event_watcher_queue": Setting(
        "EVENT_WATCHER_QUEUE",
        "1000",
        "Events buffered per watcher; one that falls further behind the live feed is cut off with its cursor.",
    ),
    "event_write_timeout": Setting(
        "EVENT_WRITE_TIMEOUT_SECONDS",
        "10",
        "A watcher's client must take each event or keep-alive this soon, or it is cut off and its place freed.",
    ),
    "event_source": Setting("EVENT_SOURCE", "/userservice", "CloudEvents `source` attribute of every event."),
    "maintenance_interval": Setting(
        "MAINTENANCE_INTERVAL_SECONDS",
        "60",
        "How often expired events, idempotency keys and stale password-failure counts are pruned, and deleted users past their purge_time purged.",
    ),
    "delete_retention": Setting(
        "DELETE_RETENTION_SECONDS",
        "2592000",
        "How long a deleted user can be undeleted: its purge_time is this long after its delete_time.",
    ),
    "subscriptions_user_service": Setting(
        "SUBSCRIPTIONS_USERSERVICE",
        "",
        "Name of the UserService whose UserEventSubscriptions this process delivers (the operator sets it). Empty: no push delivery.",
    ),
    "subscriptions_namespace": Setting(
        "SUBSCRIPTIONS_NAMESPACE",
        "",
        "Namespace of those subscriptions and their signing Secrets. Empty: the pod's own namespace, else AUTH_NAMESPACE.",
    ),
    "subscription_poll": Setting(
        "SUBSCRIPTION_POLL_SECONDS",
        "2",
        "How often the subscriptions are listed and delivery leases renewed or taken over; a deleted subscription stops within about this long.",
    ),
    "subscription_lease": Setting(
        "SUBSCRIPTION_LEASE_SECONDS",
        "10",
        "A replica delivering a subscription must renew its lease this often; another replica takes over within this plus one poll after it dies. At least twice SUBSCRIPTION_POLL_SECONDS.",
    ),
    "subscription_status_interval": Setting(
        "SUBSCRIPTION_STATUS_SECONDS",
        "5",
        "At most one status write per subscription this often (and only when it changed).",
    ),
    "subscription_secret_reread": Setting(
        "SUBSCRIPTION_SECRET_SECONDS",
        "30",
        "A subscription's signing Secret is read again this often: a rotated key signs within this long.",
    ),
    "subscription_cluster_networks": Setting(
        "SUBSCRIPTION_CLUSTER_NETWORKS",
        "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7",
        "CIDRs (comma separated) counted as inside the cluster: a sink may resolve only to these, or to a public address when its spec sets allowOutsideCluster. Name the cluster's pod and Service networks.",
    ),
    "argon2_time_cost": Setting("ARGON2_TIME_COST", "2", "argon2id iterations (OWASP: 2 with 19 MiB)."),
    "argon2_memory_kib": Setting("ARGON2_MEMORY_KIB", "19456", "argon2id memory in KiB (OWASP: 19456)."),
    "argon2_parallelism": Setting("ARGON2_PARALLELISM", "1", "argon2id lanes."),
    "hash_workers": Setting(
        "PASSWORD_HASH_WORKERS",
        "2",
        "Threads that hash passwords off the event loop, and as many processes (started on first use) that estimate the strength of new passwords: that estimate is pure Python, and in a thread it would hold the event loop up.",
    ),
    "hash_nice": Setting(
        "PASSWORD_HASH_NICE",
        "19",
        "How much lower the hashing threads' and strength processes' scheduling priority is than the event loop's (a nice increment, 0-19): while hashes keep every core busy, requests the loop answers are not queued behind them. The price: a read load that keeps every core busy slows creates down (at 19, to a few per second); 10 shares more evenly, 0 is the same priority.",
    ),
    "breach_check_url": Setting(
        "BREACH_CHECK_URL",
        "",
        "k-anonymity range service that new passwords are checked against, e.g. https://api.pwnedpasswords.com/range (unset: no check). Only the first 5 hex characters of a password's SHA-1 are sent.",
    ),
    "breach_check_timeout": Setting("BREACH_CHECK_TIMEOUT_SECONDS", "2", "Longest a breach check may take."),
    "breach_check_fail_open": Setting(
        "BREACH_CHECK_FAIL_OPEN",
        "true",
        "When the breach check fails or times out: true accepts the password, false answers 503 / UNAVAILABLE.",
    ),
    "lockout_threshold": Setting(
        "LOGIN_LOCKOUT_THRESHOLD",
        "5",
        "Consecutive failed password checks that lock an account (0: never). Counted in the database, so across all replicas.",
    ),
    "caller_lockout_threshold": Setting(
        "LOGIN_CALLER_LOCKOUT_THRESHOLD",
        "100",
        "Consecutive failed password checks from one caller (the authenticated principal; the peer address under AUTH_MODE=none), over any accounts, that lock the caller (0: never).",
    ),
    "lockout_base": Setting(
        "LOGIN_LOCKOUT_BASE_SECONDS", "30", "First lock's length; each further failure doubles it."
    ),
    "lockout_max": Setting("LOGIN_LOCKOUT_MAX_SECONDS", "3600", "Longest lock."),
    "failure_window": Setting(
        "LOGIN_FAILURE_WINDOW_SECONDS",
        "86400",
        "A failure count whose last failure is older than this starts again from zero.",
    ),
    "database_read_url": Setting(
        "DATABASE_READ_URL",
        "",
        "PostgreSQL DSNs of streaming replicas (hot standbys), separated by commas; get, list and search may read"
        " from them (see READS_WITHOUT_TOKEN). Empty: every read goes to DATABASE_URL.",
    ),
    "db_read_pool_max": Setting("DB_READ_POOL_MAX", "10", "Most connections the pool of each replica opens."),
    "reads_without_token": Setting(
        "READS_WITHOUT_TOKEN",
        "primary",
        "Where a read without a consistency token goes: primary (read-your-writes for every client, as without"
        " replicas) or replica (any replica in rotation, up to REPLICA_MAX_LAG_SECONDS behind).",
    ),
    "read_token_wait": Setting(
        "READ_TOKEN_WAIT_SECONDS",
        "0.2",
        "Longest a read with a consistency token waits for a replica to replay past it before the primary serves"
        " it instead.",
    ),
    "replica_max_lag": Setting(
        "REPLICA_MAX_LAG_SECONDS",
        "5",
        "A replica further behind the primary than this (or unreachable) leaves the rotation until it catches up.",
    ),
    "replica_probe_interval": Setting(
        "REPLICA_PROBE_SECONDS", "1", "How often each replica's replay position and lag are measured."
    ),
}

# A comma before a scheme starts the next DSN (a comma inside a DSN separates the hosts of a multi-host one).
_READ_URL_SEPARATOR = re.compile(r"\s*,\s*(?=postgres(?:ql)?://)")


def read_urls(text: str) -> list[str]:
    """The replica DSNs of DATABASE_READ_URL."""
    return [url for url in _READ_URL_SEPARATOR.split(text.strip()) if url]


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def check_database_url(url: str, name: str = "DATABASE_URL") -> str | None:
    """Why asyncpg could not use this DSN, or None. Checked at start-up: asyncpg itself reads the DSN only on
    the first connection, so a typo would otherwise surface as a 500 on every request. Never echoes the URL,
    which may hold a password."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        return f"{name} must be a postgresql:// URL"
    for host in parts.netloc.rpartition("@")[2].split(","):  # asyncpg takes host:port,host:port,...
        port = host.rpartition("]")[2] if host.startswith("[") else host
        _, colon, digits = port.rpartition(":")
        if colon and digits and not (digits.isascii() and digits.isdigit() and 0 < int(digits) < 65536):
            return f"{name} has port {digits[:20]!r}: a port is a number from 1 to 65535"
    return None


@dataclass(frozen=True)
class Config:
    database_url: str
    http_host: str
    http_port: int
    grpc_host: str
    grpc_port: int
    management_host: str
    management_port: int
    tls_cert_file: str
    tls_key_file: str
    auth_mode: str
    auth_audience: str
    auth_namespace: str
    auth_cache_seconds: float
    auth_cache_size: int
    kubeconfig: str
    db_pool_max: int
    db_command_timeout: float
    migrate_on_start: bool
    log_level: str
    log_format: str
    access_log_sample: float
    access_log_slow_seconds: float
    shutdown_delay: float
    shutdown_grace: float
    max_body_bytes: int
    batch_max_body_bytes: int
    http_header_timeout: float
    http_idle_timeout: float
    http_max_connections: int
    idempotency_ttl: float
    event_retention: float
    event_poll_interval: float
    event_watchers_max: int
    event_watcher_queue: int
    event_write_timeout: float
    event_source: str
    maintenance_interval: float
    delete_retention: float
    subscriptions_user_service: str
    subscriptions_namespace: str
    subscription_poll: float
    subscription_lease: float
    subscription_status_interval: float
    subscription_secret_reread: float
    subscription_cluster_networks: str
    argon2_time_cost: int
    argon2_memory_kib: int
    argon2_parallelism: int
    hash_workers: int
    hash_nice: int
    breach_check_url: str
    breach_check_timeout: float
    breach_check_fail_open: bool
    lockout_threshold: int
    caller_lockout_threshold: int
    lockout_base: float
    lockout_max: float
    failure_window: float
    database_read_url: str
    db_read_pool_max: int
    reads_without_token: str
    read_token_wait: float
    replica_max_lag: float
    replica_probe_interval: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        source = os.environ if env is None else env
        parsers: dict[type, Callable[[str], Any]] = {int: int, float: float, bool: _flag, str: str}
        values: dict[str, Any] = {}
        errors = []
        for f in fields(cls):
            setting = SETTINGS[f.name]
            raw = source.get(setting.env, setting.default)
            kind = {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]
            try:
                values[f.name] = parsers[kind](raw)
            except ValueError as exc:
                errors.append(f"{setting.env}={raw!r}: {exc}")
        values.update(overrides)
        if not values["database_url"]:
            errors.append("DATABASE_URL is not set (or run `make run` for a throwaway embedded PostgreSQL)")
        elif problem := check_database_url(values["database_url"]):
            errors.append(problem)
        errors.extend(
            problem
            for url in read_urls(values["database_read_url"])
            if (problem := check_database_url(url, "DATABASE_READ_URL"))
        )
        if values["reads_without_token"] not in {"primary", "replica"}:
            errors.append("READS_WITHOUT_TOKEN must be primary or replica")
        errors.extend(_subscription_errors(values))
        if values["log_format"] not in {"json", "text"}:
            errors.append("LOG_FORMAT must be json or text")
        if not 0 <= values["access_log_sample"] <= 1:
            errors.append(
                f"ACCESS_LOG_SAMPLE must be 0-1 (a share of requests), not {values['access_log_sample']}"
            )
        if not 0 <= values["hash_nice"] <= 19:
            errors.append(f"PASSWORD_HASH_NICE must be 0-19 (a nice increment), not {values['hash_nice']}")
        if bool(values["tls_cert_file"]) != bool(values["tls_key_file"]):
            errors.append("TLS_CERT_FILE and TLS_KEY_FILE are set together or not at all")
        if errors:
            raise ConfigError("; ".join(errors))
        return cls(**values)

    def for_serving(self) -> Config:
        """This configuration, checked for serving (migrate needs none of it), with AUTH_NAMESPACE defaulting
        to the pod's own namespace."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        errors = _access_errors(values)
        if errors:
            raise ConfigError("; ".join(errors))
        return Config(**values)


def _subscription_errors(values: dict[str, Any]) -> list[str]:
    errors = []
    if values["subscription_poll"] <= 0 or values["subscription_lease"] < 2 * values["subscription_poll"]:
        errors.append(
            "SUBSCRIPTION_POLL_SECONDS must be above 0 and SUBSCRIPTION_LEASE_SECONDS at least twice it"
            " (a lease must survive a late renewal)"
        )
    for part in values["subscription_cluster_networks"].split(","):
        try:
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            errors.append(f"SUBSCRIPTION_CLUSTER_NETWORKS: {part.strip()!r} is not a CIDR such as 10.0.0.0/8")
    return errors


def subscriptions_namespace(config: Config) -> str:
    """Where the subscriptions live: SUBSCRIPTIONS_NAMESPACE, else the pod's namespace, else AUTH_NAMESPACE."""
    if config.subscriptions_namespace:
        return config.subscriptions_namespace
    if IN_CLUSTER_NAMESPACE.is_file():
        return IN_CLUSTER_NAMESPACE.read_text().strip()
    return config.auth_namespace


IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _access_errors(values: dict[str, Any]) -> list[str]:
    """Why the access settings cannot serve; fills AUTH_NAMESPACE from the pod's own namespace when unset."""
    mode = values["auth_mode"]
    if mode == "none":
        # No checks is only for a laptop: every listener must be unreachable from another machine.
        exposed = [
            f"{env}={values[name]}"
            for name, env in (
                ("http_host", "HTTP_HOST"),
                ("grpc_host", "GRPC_HOST"),
                ("management_host", "MANAGEMENT_HOST"),
            )
            if not is_loopback(values[name])
        ]
        if exposed:
            return [
                "AUTH_MODE=none serves without authentication, so every listener must be a loopback address "
                f"(127.0.0.1, ::1, localhost); not: {', '.join(exposed)}"
            ]
        return []
    if mode != "kubernetes":
        return ["AUTH_MODE must be kubernetes or none"]
    errors = []
    if not values["auth_audience"]:
        errors.append("AUTH_AUDIENCE is required when AUTH_MODE=kubernetes")
    if not values["auth_namespace"] and IN_CLUSTER_NAMESPACE.is_file():
        values["auth_namespace"] = IN_CLUSTER_NAMESPACE.read_text().strip()
    if not values["auth_namespace"]:
        errors.append("AUTH_NAMESPACE is required when AUTH_MODE=kubernetes outside a pod")
    if values["auth_cache_seconds"] < 0 or values["auth_cache_size"] < 1:
        errors.append("AUTH_CACHE_SECONDS must be at least 0 and AUTH_CACHE_SIZE at least 1")
    return errors
