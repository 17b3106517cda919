"""Process-level behaviour: graceful SIGTERM, concurrent migrations, readiness, metrics, logs, CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import aiohttp
import asyncpg
import grpc
import pytest

from tests.support.postgres import create_database
from tests.support.service import RunningService, ServiceProcess, in_process
from tests.support.sse import read_events
from tests.support.users import new_user
from userservice.store.migrator import VERSIONS
from userservice.v1 import user_service_pb2 as pb
from userservice.v1 import user_service_pb2_grpc as pb_grpc


async def test_sigterm_drains_requests_and_ends_streams_cleanly(database: str) -> None:
    # Slow hashing keeps creates in flight when the signal lands; a delay shows readiness failing first.
    replica = ServiceProcess(
        database,
        env={
            "ARGON2_TIME_COST": "3",
            "ARGON2_MEMORY_KIB": "65536",
            "SHUTDOWN_DELAY_SECONDS": "1",
            "SHUTDOWN_GRACE_SECONDS": "20",
        },
    ).start()
    successor = ServiceProcess(database).start()
    try:
        async with (
            aiohttp.ClientSession(base_url=replica.http) as http,
            grpc.aio.insecure_channel(replica.grpc) as channel,
        ):
            sse = await http.get("/v1/events")
            watch = pb_grpc.UserServiceStub(channel).WatchUserEvents(pb.WatchUserEventsRequest())
            assert await sse.content.readline() == b": connected\n"
            assert await sse.content.readline() == b"\n"
            await watch.initial_metadata()
            async with http.post("/v1/users", json=new_user()) as resp:
                assert resp.status == 201

            async def create() -> str:
                async with http.post("/v1/users", json=new_user()) as resp:
                    assert resp.status == 201, await resp.text()
                    return str((await resp.json())["id"])

            in_flight = [asyncio.create_task(create()) for _ in range(12)]
            await asyncio.sleep(0.3)
            replica.terminate()
            await asyncio.sleep(0.3)
            async with (
                aiohttp.ClientSession(base_url=replica.management) as probe,
                probe.get("/readyz") as resp,
            ):
                assert resp.status == 503
                assert (await resp.json())["reason"] == "shutting down"
            created = set(await asyncio.gather(*in_flight))  # every in-flight request completes
            seen = [e async for e in read_events(sse)]  # the stream ends (cleanly) with the shutdown
            watched = [e async for e in watch]
            assert await watch.code() == grpc.StatusCode.OK
            assert seen and watched
        assert await asyncio.to_thread(replica.wait, 30) == 0
        assert any(log.get("message") == "stopped" for log in replica.logs)
        # A consumer resuming on another replica from its last cursor misses nothing.
        last_seen = {e.data["subject"] for e in seen}
        async with aiohttp.ClientSession(base_url=successor.http) as http:
            resp = await http.get("/v1/events", headers={"Last-Event-ID": seen[-1].id})
            async for event in read_events(resp):
                last_seen.add(event.data["subject"])
                if created <= last_seen:
                    break
            resp.close()
        assert created <= last_seen
    finally:
        replica.kill()
        successor.kill()


async def test_three_concurrent_migrations_apply_each_version_once(postgres_dsn: str) -> None:
    dsn = await create_database(postgres_dsn, migrated=False)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "userservice.cli",
            "migrate",
            env={"DATABASE_URL": dsn, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    results = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version"
        )
    finally:
        await conn.close()
    assert [(r["version"], r["count"]) for r in rows] == [(v, 1) for v in VERSIONS]
    applied = [
        json.loads(line)["applied"]
        for out, _ in results
        for line in out.decode().splitlines()
        if "migrations complete" in line
    ]
    assert sorted(len(a) for a in applied) == [0, 0, len(VERSIONS)]


async def test_readyz_fails_until_schema_is_current(postgres_dsn: str) -> None:
    dsn = await create_database(postgres_dsn, migrated=False)
    async with in_process(dsn) as running, aiohttp.ClientSession(base_url=running.management) as http:
        async with http.get("/readyz") as resp:
            assert resp.status == 503
            assert "userservice migrate" in (await resp.json())["reason"]
        async with http.get("/healthz") as resp:
            assert resp.status == 200
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "userservice.cli", "migrate", env={"DATABASE_URL": dsn}
        )
        assert await migrate.wait() == 0
        async with http.get("/readyz") as resp:
            assert resp.status == 200


async def test_metrics_cover_http_grpc_pool_events_and_users(
    service: RunningService, http: aiohttp.ClientSession
) -> None:
    async with http.post("/v1/users", json=new_user()) as resp:
        assert resp.status == 201
    async with grpc.aio.insecure_channel(service.grpc) as channel:
        await pb_grpc.UserServiceStub(channel).ListUsers(pb.ListUsersRequest())
    async with http.get(f"{service.management}/metrics") as resp:
        text = await resp.text()
    for expected in [
        'userservice_http_requests_total{code="201",method="POST",route="/v1/users"}',
        'userservice_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/users"}',
        'userservice_grpc_requests_total{code="OK",method="ListUsers"}',
        'userservice_grpc_request_duration_seconds_count{method="ListUsers"}',
        'userservice_db_pool_connections{state="idle"}',
        "userservice_db_pool_max_connections",
        'userservice_events_appended_total{type="io.userservice.user.created.v1"}',
        'userservice_user_changes_total{operation="created"}',
        "userservice_event_watchers",
        "userservice_password_hash_duration_seconds_count",
    ]:
        assert expected in text, expected


async def test_http_method_label_is_bounded(service: RunningService, http: aiohttp.ClientSession) -> None:
    """A client-chosen method must not become a label value (one new series per verb the HTTP parser knows)."""
    for verb in ("PROPFIND", "MKCOL", "PURGE"):
        async with http.request(verb, "/v1/users") as resp:
            assert resp.status == 405
    async with http.get(f"{service.management}/metrics") as resp:
        text = await resp.text()
    assert not [verb for verb in ("PROPFIND", "MKCOL", "PURGE") if verb in text]
    assert 'userservice_http_requests_total{code="405",method="other",route="unmatched"}' in text


async def test_logs_are_json_with_request_id_and_never_a_password(database: str) -> None:
    replica = ServiceProcess(database).start()
    secret = f"never-log-{uuid.uuid4().hex}"
    try:
        async with aiohttp.ClientSession(base_url=replica.http) as http:
            async with http.post(
                "/v1/users", json=new_user(password=secret), headers={"X-Request-ID": "trace-me-1"}
            ) as resp:
                assert resp.headers["X-Request-ID"] == "trace-me-1"
            async with http.post("/v1/users", json=new_user(password=secret, email="bad")) as resp:
                assert resp.status == 400
        replica.terminate()
        await asyncio.to_thread(replica.wait)
    finally:
        replica.kill()
    access = [
        r for r in replica.logs if r.get("message") == "request" and r.get("request_id") == "trace-me-1"
    ]
    assert (
        access
        and access[0]["status"] == 201
        and access[0]["method"] == "POST"
        and access[0]["level"] == "INFO"
    )
    assert secret not in json.dumps(replica.logs)


async def test_the_sampled_access_log_keeps_every_error_and_write(database: str) -> None:
    # No fast, successful read is sampled and none is slow: only errors and writes get a line.
    replica = ServiceProcess(
        database, env={"ACCESS_LOG_SAMPLE": "0", "ACCESS_LOG_SLOW_SECONDS": "3600"}
    ).start()
    missing = uuid.uuid4()
    try:
        async with aiohttp.ClientSession(base_url=replica.http) as http:
            async with http.post("/v1/users", json=new_user()) as resp:
                assert resp.status == 201
                created = await resp.json()
            for path, status in (
                (f"/v1/users/{created['id']}", 200),
                (f"/v1/users/{missing}", 404),
                ("/v1/users/not-an-id", 400),
                ("/v1/users?country=GB", 200),
            ):
                async with http.get(path) as resp:
                    assert resp.status == status, path
        replica.terminate()
        await asyncio.to_thread(replica.wait)
    finally:
        replica.kill()
    logged = [(r["method"], r["path"], r["status"]) for r in replica.logs if r.get("message") == "request"]
    assert logged == [
        ("POST", "/v1/users", 201),
        ("GET", f"/v1/users/{missing}", 404),
        ("GET", "/v1/users/not-an-id", 400),
    ]


async def test_grpc_request_ids_are_held_to_the_rest_rule(database: str) -> None:
    replica = ServiceProcess(database).start()
    try:
        async with grpc.aio.insecure_channel(replica.grpc) as channel:
            stub = pb_grpc.UserServiceStub(channel)
            for rid in ("trace-me-2", "r" * 5000):
                await stub.CreateUser(
                    pb.CreateUserRequest(user=pb.User(**new_user())),  # type: ignore[arg-type]
                    metadata=(("x-request-id", rid),),
                )
        replica.terminate()
        await asyncio.to_thread(replica.wait)
    finally:
        replica.kill()
    ids = [r.get("request_id", "") for r in replica.logs if r.get("message") == "user created"]
    assert len(ids) == 2 and ids[0] == "trace-me-2"
    assert 0 < len(str(ids[1])) <= 128  # an overlong id is replaced, not written into every log line


def test_cli_help_and_configuration_errors() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "userservice.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "serve" in out.stdout and "migrate" in out.stdout and "DATABASE_URL" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "userservice.cli", "serve"],
        capture_output=True,
        text=True,
        env={"HTTP_PORT": "eighty"},
    )
    assert bad.returncode == 2
    assert "HTTP_PORT='eighty'" in bad.stderr and "DATABASE_URL is not set" in bad.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://app:s3cret@localhost:fivefour/users", "port 'fivefour'"),
        ("postgresql://app:s3cret@a:5432,b:99999/users", "port '99999'"),
        ("mysql://app:s3cret@localhost/users", "postgresql:// URL"),
    ],
)
def test_a_malformed_database_url_fails_at_start(url: str, message: str) -> None:
    service = ServiceProcess(url)
    with pytest.raises(RuntimeError, match="service did not start"):
        service.start(timeout=30)
    assert service.wait() == 2
    text = json.dumps(service.logs)
    assert message in text and "DATABASE_URL" in text and "s3cret" not in text
    assert not any(record.get("message") == "serving" for record in service.logs)


async def test_unreachable_database_is_503_and_unavailable_not_500() -> None:
    # Nothing listens on port 1: every connection attempt is refused. The service still starts and says why.
    async with in_process("postgresql://nobody@127.0.0.1:1/none") as running:
        async with aiohttp.ClientSession(base_url=running.http) as http:
            async with http.get(f"{running.management}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"{running.management}/readyz") as resp:
                assert resp.status == 503
                assert "database unreachable" in (await resp.json())["reason"]
            async with http.get(f"/v1/users/{uuid.uuid4()}") as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "1"
                assert resp.content_type == "application/problem+json"
        async with grpc.aio.insecure_channel(running.grpc) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.UserServiceStub(channel).GetUser(pb.GetUserRequest(id=str(uuid.uuid4())))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_retention_prunes_old_events_expired_keys_and_stale_failure_counts(
    database: str, http: aiohttp.ClientSession
) -> None:
    from userservice.core.maintenance import prune_once
    from userservice.store.db import create_pool

    async with http.post(
        "/v1/users", json=new_user(), headers={"Idempotency-Key": str(uuid.uuid4())}
    ) as resp:
        assert resp.status == 201
    pool = await create_pool(database, 2, 10)
    try:
        async with pool.acquire() as conn:
            # A pruning round two hours ago saw the stream's current end: the events so far are past retention.
            await conn.execute(
                """INSERT INTO user_events_horizons (observed_at, tx)
                   VALUES (now() - interval '2 hours', pg_snapshot_xmax(pg_current_snapshot()))"""
            )
            await conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
            async with http.post("/v1/users", json=new_user()) as resp:  # a fresh event that must survive
                assert resp.status == 201
            await conn.execute(
                """INSERT INTO credential_failures (scope, subject, failures, last_failure, locked_until) VALUES
                   ('caller', 'stale', 3, now() - interval '2 hours', NULL),
                   ('caller', 'still locked', 9, now() - interval '2 hours', now() + interval '1 hour'),
                   ('caller', 'recent', 1, now(), NULL)"""
            )
        events, keys, failures = await prune_once(pool, event_retention=3600, failure_window=3600) or (
            0,
            0,
            0,
        )
        assert events >= 1 and keys >= 1 and failures == 1
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM user_events") == 1
            assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 0
            subjects = await conn.fetch("SELECT subject FROM credential_failures ORDER BY subject")
            assert [r["subject"] for r in subjects] == ["recent", "still locked"]
    finally:
        await pool.close()
