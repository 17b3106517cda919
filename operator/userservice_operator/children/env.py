"""The environment the operator gives the service's containers, and the CRD rules that keep spec.env from setting
any of it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from userservice_operator.spec import UserService

# Every environment variable the operator sets itself, and where its value comes from. crd.yaml reserves exactly
# these (the CEL rule on each spec.env entry is `reserved_env_validation()`; a unit test keeps the two equal): a
# duplicate name would make the API server refuse the Deployment and the Job.
OPERATOR_ENV: Mapping[str, str] = MappingProxyType(
    {
        "DATABASE_URL": "from spec.database",
        "LOG_LEVEL": "from spec.logLevel",
        "HTTP_PORT": "from spec.http.port",
        "GRPC_PORT": "from spec.grpc.port",
        "SHUTDOWN_GRACE_SECONDS": "from spec.shutdownGracePeriodSeconds",
        "MANAGEMENT_PORT": "from spec.management.port",
        "AUTH_MODE": "to kubernetes (authentication cannot be switched off)",
        "AUTH_AUDIENCE": "from spec.auth.audience",
        "AUTH_NAMESPACE": "to the namespace of the UserService",
        "AUTH_CACHE_SECONDS": "from spec.auth.cacheSeconds",
        "TLS_CERT_FILE": "from spec.tls",
        "TLS_KEY_FILE": "from spec.tls",
        "SUBSCRIPTIONS_USERSERVICE": "to the name of the UserService (its pods deliver its UserEventSubscriptions)",
    }
)


# Where the spec.tls Secret is mounted (the service reads the pair from TLS_CERT_FILE / TLS_KEY_FILE).
TLS_DIR = "/etc/userservice/tls"


def reserved_env_validation() -> dict[str, str]:
    """The CEL validation of each spec.env entry that refuses the operator's own variables, naming the one set."""
    names = ", ".join(f"'{n}'" for n in OPERATOR_ENV)
    how = ", ".join(f"'{n}': '{v}'" for n, v in OPERATOR_ENV.items())
    return {
        "rule": f"!(self.name in [{names}])",
        "fieldPath": ".name",
        "messageExpression": f"'spec.env must not set ' + self.name + ': the operator sets it ' + {{{how}}}[self.name]",
        "message": f"spec.env must not set a variable the operator sets ({', '.join(OPERATOR_ENV)})",
    }


def database_secret(us: UserService) -> tuple[str, str]:
    """(Secret name, key) holding DATABASE_URL: spec.database.secretRef, or CloudNativePG's `<cluster>-app`
    Secret, whose `uri` key is the read-write Service's DSN."""
    db = us.spec.database
    if db.cloud_native_pg is not None:
        return f"{db.cloud_native_pg.cluster_name}-app", "uri"
    assert db.secret_ref is not None  # the CRD requires one of the two
    return db.secret_ref.name, db.secret_ref.key


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def base_env(us: UserService) -> list[dict[str, Any]]:
    """Environment shared by the service container and the migration Job."""
    secret, key = database_secret(us)
    return [_secret_env("DATABASE_URL", secret, key), {"name": "LOG_LEVEL", "value": us.spec.log_level}]


# Set by the operator only with spec.database.cloudNativePG (reads) or maxConnections (pool sizes): the CRD's
# `conditional_env_rule()` keeps spec.env from setting them then.
CLOUDNATIVEPG_ENV = ("DATABASE_READ_URL", "PGUSER", "PGPASSWORD", "PGDATABASE")


BUDGET_ENV = ("DB_POOL_MAX", "DB_READ_POOL_MAX")


def database_env(us: UserService, pool: int | None) -> list[dict[str, Any]]:
    """The serving pods' read replicas and pool sizes.

    CloudNativePG: reads go to the `<cluster>-ro` Service. Its DSN carries no credentials: asyncpg takes the user,
    password and database a DSN leaves out from PGUSER, PGPASSWORD and PGDATABASE, set here from the same Secret
    by reference, so no secret is copied and no password needs URL-encoding. (DATABASE_URL, the Secret's `uri`,
    names all three itself.)
    """
    env: list[dict[str, Any]] = []
    cnpg = us.spec.database.cloud_native_pg
    if cnpg is not None:
        secret, _ = database_secret(us)
        env += [
            {
                "name": "DATABASE_READ_URL",
                "value": f"postgresql://{cnpg.cluster_name}-ro.{us.namespace}:5432",
            },
            _secret_env("PGUSER", secret, "username"),
            _secret_env("PGPASSWORD", secret, "password"),
            _secret_env("PGDATABASE", secret, "dbname"),
        ]
    if pool is not None:
        env += [{"name": "DB_POOL_MAX", "value": str(pool)}, {"name": "DB_READ_POOL_MAX", "value": str(pool)}]
    return env


def conditional_env_rule() -> str:
    """The CEL rule on spec that refuses spec.env entries the operator sets for this spec."""
    cnpg = ", ".join(f"'{n}'" for n in CLOUDNATIVEPG_ENV)
    budget = ", ".join(f"'{n}'" for n in BUDGET_ENV)
    return (
        f"!has(self.env) || self.env.all(e, !(has(self.database.cloudNativePG) && e.name in [{cnpg}])"
        f" && !(has(self.database.maxConnections) && e.name in [{budget}]))"
    )
