"""The asyncpg connection pool and its per-connection setup."""

from __future__ import annotations

import asyncio

import asyncpg

from userservice import jsoncodec
from userservice.domain import consistency

# Failures that mean "the database cannot serve right now", not "the request is wrong": adapters answer them with
# 503 / UNAVAILABLE so clients retry, instead of a 500.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,  # our session was terminated by the server or an operator
    asyncpg.ObjectNotInPrerequisiteStateError,  # at connect: the database does not accept connections
    # A pooled connection the server terminated while it sat idle: the FATAL message puts asyncpg's protocol into
    # "consuming an error" until the socket closes a moment later, and a query started in between is refused before
    # anything is sent. The connection is gone either way; the request is answered like any other lost session.
    asyncpg.InternalClientError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    """jsonb goes both ways in its binary format, which binary COPY (a batch's events) requires of
    every column it writes: a text-format codec would make asyncpg refuse the COPY."""
    await conn.set_type_codec(
        "jsonb",
        encoder=jsoncodec.dumps_jsonb,
        decoder=jsoncodec.loads_jsonb,
        schema="pg_catalog",
        format="binary",
    )


async def _release_as_is(conn: asyncpg.Connection) -> None:
    """Pool reset on release: nothing beyond asyncpg's own rollback of an unfinished transaction.

    Pooled connections keep no session state: no SET, cursor, LISTEN (the event feed listens on a connection
    of its own) or session advisory lock (maintenance takes a transaction-level one; the start-up migration
    resets its connection itself). asyncpg's default reset query (`SELECT pg_advisory_unlock_all(); CLOSE
    ALL; UNLISTEN *; RESET ALL`) would be one more round trip per request for nothing: a profile of REST
    get-by-id showed 9% of the service's samples in `Connection.reset`.
    """


# The primary's WAL position, taken after a write's COMMIT returned: the insert position is at or past the end of
# the commit record however the commit was flushed (synchronous_commit off included), so a replica that replayed
# up to it holds the write.
COMMIT_POSITION_SQL = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"


async def create_pool(
    dsn: str, max_size: int, command_timeout: float, connect_timeout: float = 60.0
) -> asyncpg.Pool:
    """Connections open on demand (min_size=0), so the service starts, and reports not-ready, while the
    database is still unreachable."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        timeout=connect_timeout,
        min_size=0,
        max_size=max_size,
        command_timeout=command_timeout,
        init=_init_connection,
        reset=_release_as_is,
        server_settings={"application_name": "userservice"},
    )
    return pool


class FairPool:
    """The pool behind a first-come, first-served gate, for request handling.

    asyncpg's pool hands a released connection to whichever coroutine asks next, and asyncio.Queue puts a
    getter that was woken but overtaken back at the end of the line, so under overload some requests wait
    far longer than others (REST list at 64 connections on a pool of 10: p99 217 ms at a p50 of 63 ms). A semaphore of
    the pool's size in front serves waiters in arrival order: asyncio.Semaphore hands a released permit to
    the first waiter.

    In a request that writes (see domain/consistency.py), each use of a primary connection that ended without an
    error notes the primary's WAL position on that connection before it goes back: the reply's consistency token.
    """

    def __init__(self, pool: asyncpg.Pool, *, notes_writes: bool = False) -> None:
        self._pool = pool
        self._gate = asyncio.Semaphore(pool.get_max_size())
        self._notes_writes = notes_writes  # the primary's, when replicas serve reads

    def acquire(self) -> _FairLease:
        return _FairLease(self._pool, self._gate, self._notes_writes)


class _FairLease:
    """`async with fair_pool.acquire() as conn`: a permit of the gate, then a pooled connection. A plain class,
    not an @asynccontextmanager generator: this runs on every request."""

    __slots__ = ("_conn", "_gate", "_lease", "_notes_writes", "_pool")

    def __init__(self, pool: asyncpg.Pool, gate: asyncio.Semaphore, notes_writes: bool) -> None:
        self._pool, self._gate, self._notes_writes = pool, gate, notes_writes

    async def __aenter__(self) -> asyncpg.Connection:
        await self._gate.acquire()
        try:
            self._lease = self._pool.acquire()
            self._conn: asyncpg.Connection = await self._lease.__aenter__()
            return self._conn
        except BaseException:
            self._gate.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        try:
            if exc[0] is None and self._notes_writes:
                request = consistency.current()
                if request is not None and request.records_writes:
                    request.note_write(int(await self._conn.fetchval(COMMIT_POSITION_SQL)))
        finally:
            try:
                await self._lease.__aexit__(*exc)
            finally:
                self._gate.release()


async def load_secret(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> bytes:
    value: bytes = await conn.fetchval("SELECT value FROM service_secrets WHERE name = $1", name)
    return value
