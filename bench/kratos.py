"""The Go peer: Ory Kratos (its version pinned in bench/peer/kratos/go.mod), served from its own database on the
same PostgreSQL, migrated with `kratos migrate sql`, and seeded with the same users as the service.

Kratos's admin API has no authentication of its own (it is meant to sit behind a gateway), so its figures are
of unauthenticated requests. Both sides hash new passwords with argon2id at m=19 MiB, t=2, p=1: the service with
argon2-cffi (the reference C implementation) on its PASSWORD_HASH_WORKERS threads, Kratos with Go's
golang.org/x/crypto/argon2 in the request's goroutine.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import asyncpg

from bench import stack, tools
from tests.support.postgres import with_database

SCHEMA = tools.KRATOS_MODULE / "identity.schema.json"
SCHEMA_ID = "user"
BATCH = 1000  # identities per seeding call (Kratos takes up to 2,000)
SEEDERS = 2  # seeding calls at once: the database and Kratos each get a core's worth


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def go_dsn(dsn: str, pool_size: int) -> str:
    """An asyncpg DSN as Kratos's driver reads it: postgres://, TLS off on loopback, a pool of `pool_size`."""
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update(sslmode="disable", max_conns=str(pool_size), max_idle_conns=str(pool_size))
    return urlunsplit(parts._replace(scheme="postgres", query=urlencode(query)))


def config(admin_port: int, public_port: int) -> dict[str, Any]:
    """Kratos's configuration: the password method only, argon2id at the service's costs, JSON logs at its
    default level (a line per request, as the service writes one)."""
    return {
        "serve": {
            "public": {
                "host": "127.0.0.1",
                "port": public_port,
                "base_url": f"http://127.0.0.1:{public_port}/",
            },
            "admin": {"host": "127.0.0.1", "port": admin_port, "base_url": f"http://127.0.0.1:{admin_port}/"},
        },
        "selfservice": {
            "default_browser_return_url": f"http://127.0.0.1:{public_port}/",
            "methods": {"password": {"enabled": True, "config": {"haveibeenpwned_enabled": False}}},
        },
        "identity": {"default_schema_id": SCHEMA_ID, "schemas": [{"id": SCHEMA_ID, "url": SCHEMA.as_uri()}]},
        "hashers": {
            "algorithm": "argon2",
            "argon2": {
                "memory": "19MB",
                "iterations": 2,
                "parallelism": 1,
                "salt_length": 16,
                "key_length": 32,
            },
        },
        "secrets": {"cookie": [uuid.uuid4().hex + uuid.uuid4().hex], "cipher": [uuid.uuid4().hex]},
        "log": {"level": "info", "format": "json", "leak_sensitive_values": False},
    }


class Kratos:
    """`kratos serve` on its own database of the bench's PostgreSQL; stop() ends it and drops the database."""

    def __init__(self, admin_dsn: str, pool_size: int, workdir: Path) -> None:
        self.binary, self.build_seconds = tools.kratos()
        self.version = tools.kratos_version()
        self.admin_dsn = admin_dsn
        self.database = f"kratos_{uuid.uuid4().hex[:8]}"
        self.dsn = with_database(admin_dsn, self.database)
        asyncio.run(self._execute(admin_dsn, f'CREATE DATABASE "{self.database}"'))
        self.workdir = workdir / "kratos"
        self.workdir.mkdir()
        admin_port, public_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{admin_port}"
        cfg = self.workdir / "kratos.yml"
        cfg.write_text(json.dumps(config(admin_port, public_port)))  # JSON is YAML
        self.env = {**os.environ, "DSN": go_dsn(self.dsn, pool_size)}
        migrated = subprocess.run(
            [self.binary, "migrate", "sql", "-e", "--yes", "-c", str(cfg)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if migrated.returncode != 0:
            raise RuntimeError(
                f"kratos migrate sql failed:\n{migrated.stdout[-2000:]}{migrated.stderr[-2000:]}"
            )
        self.log = self.workdir / "kratos.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "-c", str(cfg)], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_ready()

    @staticmethod
    async def _execute(dsn: str, sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kratos serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/admin/health/ready", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"kratos not ready:\n{self.log.read_text()[-3000:]}")

    def seed(self, users: list[dict[str, str]], ids_file: Path) -> list[str]:
        """The users as identities (their argon2id hashes imported as they are), through the admin API's batch
        create; writes the identities' ids to `ids_file`, one per line."""
        with ThreadPoolExecutor(SEEDERS) as pool:
            batches = pool.map(
                self._create_batch, (users[i : i + BATCH] for i in range(0, len(users), BATCH))
            )
            ids = [identity for batch in batches for identity in batch]
        asyncio.run(self._execute(self.dsn, "VACUUM (ANALYZE)"))
        ids_file.write_text("\n".join(ids) + "\n")
        return ids

    def _create_batch(self, users: list[dict[str, str]]) -> list[str]:
        body = {
            "identities": [
                {
                    "create": {
                        "schema_id": SCHEMA_ID,
                        "traits": {
                            k: u[k] for k in ("email", "nickname", "first_name", "last_name", "country")
                        },
                        "credentials": {"password": {"config": {"hashed_password": u["password_hash"]}}},
                    }
                }
                for u in users
            ]
        }
        request = urllib.request.Request(
            f"{self.url}/admin/identities",
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=300) as resp:
            answer = json.loads(resp.read())
        failed = [r for r in answer["identities"] if r.get("action") != "create"]
        if failed:
            raise RuntimeError(f"Kratos refused {len(failed)} seeded identities: {failed[:3]}")
        return [str(r["identity"]) for r in answer["identities"]]

    def quiesce(self) -> None:
        """Wait until creates still queued in Kratos when the load stopped (each waits for its hash) are written."""
        stack.quiesce(self.dsn, "SELECT count(*) FROM identities")

    def stop(self) -> None:
        stack.terminate(self.proc)
        asyncio.run(self._execute(self.admin_dsn, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))


async def seeded_users(dsn: str) -> list[dict[str, str]]:
    """The service's seeded users, oldest first, with their hashes: what Kratos is seeded with."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT first_name, last_name, nickname, email, country, password_hash FROM users ORDER BY created_at"
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]
