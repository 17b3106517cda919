"""Versioned SQL migrations, applied in order under a PostgreSQL advisory lock.

Replicas that start together all call `migrate`; the lock makes the second and third wait and then find
nothing left to do. Each migration runs in its own transaction and is recorded with a checksum, so an
edited migration that was already applied is reported instead of silently diverging.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# An arbitrary constant naming this service's migration lock (pg_advisory_lock takes a bigint).
LOCK_ID = 0x75736572_73766301
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("userservice.store.migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    # Gaps in the numbers are allowed; every version present is applied, lowest first.
    if len(set(versions)) != len(versions) or not versions or versions[0] < 1:
        raise MigrationError(f"migration versions must be distinct positive numbers, found {versions}")
    return found


VERSIONS = tuple(m.version for m in load_migrations())

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Applies pending migrations; returns the versions applied by this call."""
    migrations = load_migrations()
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
    try:
        await conn.execute(_CREATE_TABLE)
        applied = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        known = {m.version for m in migrations}
        newer = sorted(v for v in applied if v not in known)
        if newer:
            log.warning("database has migrations newer than this build", extra={"versions": newer})
        done = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version}_{migration.name} was changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration", extra={"version": migration.version, "migration": migration.name})
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)


async def pending_versions(conn: asyncpg.Connection) -> list[int]:
    """The migrations of this build not yet applied (a gap filled by a later merge counts too)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = (
        {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")} if exists else set()
    )
    return [v for v in VERSIONS if v not in applied]
