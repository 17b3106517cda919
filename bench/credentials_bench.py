"""The credential baselines and the import load: bulk import through batchCreate against a raw COPY of the same
rows, and argon2id verifying in-process on as many threads as the service hashes with."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import bcrypt

from bench import stack
from bench.stats import Run, percentile
from userservice.passwords.hashing import lower_priority

BCRYPT_COST = (
    4  # the lowest the service accepts: imported hashes are only stored, never checked, by an import
)


def bcrypt_hashes(count: int) -> list[str]:
    """Distinct hashes made once, before any timing, as another system would export them."""
    return [
        bcrypt.hashpw(f"imported password {i}".encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
        for i in range(count)
    ]


def _users(prefix: str, hashes: list[str]) -> list[dict[str, str]]:
    return [
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "nickname": f"{prefix}n{i}",
            "email": f"{prefix}n{i}@example.com",
            "country": "GB",
            "password_hash": password_hash,
        }
        for i, password_hash in enumerate(hashes)
    ]


async def import_rates(base_url: str, dsn: str, batches: int, hashes: list[str]) -> dict[str, Any]:
    """Users/s of `batches` batchCreate calls of len(hashes) users each, one at a time, and of COPY of the same
    rows into a table of the users table's shape (its indexes and constraints too), a COPY after each call.
    Bodies and rows are built before their timing starts."""
    service_seconds, copy_seconds = [], []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE import_baseline (LIKE users INCLUDING ALL)")
        async with aiohttp.ClientSession(base_url=base_url) as http:
            for batch in range(batches):
                users = _users(f"import{batch}", hashes)
                body = json.dumps({"requests": [{"user": user} for user in users]})
                started = time.perf_counter()
                async with http.post(
                    "/v1/users:batchCreate", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    answer = await resp.read()
                service_seconds.append(time.perf_counter() - started)
                if resp.status != 200:
                    raise RuntimeError(f"batchCreate answered {resp.status}: {answer[:500]!r}")
                now = datetime.now(UTC)
                fields = stack.USER_COLUMNS[1:7]  # first_name .. password_hash, the batch's fields
                rows = [(uuid.uuid4(), *(user[f] for f in fields), now, now, 1) for user in users]
                started = time.perf_counter()
                await conn.copy_records_to_table("import_baseline", records=rows, columns=stack.USER_COLUMNS)
                copy_seconds.append(time.perf_counter() - started)
        await conn.execute("DROP TABLE import_baseline")
    finally:
        await conn.close()
    size = len(hashes)
    return {
        "users": batches * size,
        "users_per_s": [size / s for s in service_seconds],  # one rate per batch (a round)
        "baseline_users_per_s": [size / s for s in copy_seconds],
    }


def raw_argon2(seconds: float, workers: int, op: str) -> Run:
    """argon2id at the service's costs, `workers` threads hashing new passwords (op "hash") or verifying one
    (op "verify") for `seconds` (argon2-cffi releases the GIL while it hashes, as in the service's pool), at the
    scheduling priority of the service's hashing threads (PASSWORD_HASH_NICE)."""
    hasher = stack.service_hasher()
    password_hash = hasher.hash(stack.PASSWORD)
    work = (
        (lambda: hasher.hash(stack.PASSWORD))
        if op == "hash"
        else (lambda: hasher.verify(password_hash, stack.PASSWORD))
    )
    deadline = time.monotonic() + seconds

    def until_deadline(_: int) -> list[float]:
        took = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            work()
            took.append(time.perf_counter() - started)
        return took

    started = time.monotonic()
    nice = stack.service_setting("hash_nice")
    with ThreadPoolExecutor(workers, initializer=lower_priority, initargs=(nice,)) as pool:
        took = [t for thread in pool.map(until_deadline, range(workers)) for t in thread]
    return Run(
        "argon2-cffi",
        f"argon2id on {workers} threads",
        op,
        workers,
        time.monotonic() - started,
        len(took),
        0,
        percentile(took, 50) * 1000,
        percentile(took, 99) * 1000,
    )
