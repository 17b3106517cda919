"""SQL for the failure counters in credential_failures. Every replica counts in the same rows."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

# (scope, subject), e.g. ("account", "<user id>") or ("caller", "203.0.113.7")
Subject = tuple[str, str]


async def locked_for(conn: asyncpg.Connection | asyncpg.Pool, subjects: Sequence[Subject]) -> float:
    """Seconds until the longest running lock among `subjects` ends; 0 when none is locked."""
    seconds = await conn.fetchval(
        """SELECT coalesce(max(extract(epoch FROM locked_until - now())), 0)::float8
           FROM credential_failures
           WHERE (scope, subject) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND locked_until > now()""",
        [scope for scope, _ in subjects],
        [subject for _, subject in subjects],
    )
    return float(seconds)


async def admit(conn: asyncpg.Connection, subject: Subject, window_seconds: float) -> int | None:
    """Counts one attempt against an unlocked subject, before its password is checked, in one atomic upsert, and
    returns the new count (attempts since the last success, in flight included); None while the subject is
    locked. A count whose last attempt is older than the window starts again. Holds the row lock until the
    caller's transaction ends, so concurrent attempts see the counts 1, 2, 3 … one after another."""
    count = await conn.fetchval(
        """INSERT INTO credential_failures AS f (scope, subject, failures) VALUES ($1, $2, 1)
           ON CONFLICT (scope, subject) DO UPDATE SET
               failures = CASE WHEN f.last_failure < now() - make_interval(secs => $3) THEN 1
                               ELSE f.failures + 1 END,
               last_failure = now()
           WHERE f.locked_until IS NULL OR f.locked_until <= now()
           RETURNING failures""",
        *subject,
        window_seconds,
    )
    return None if count is None else int(count)


async def lock(conn: asyncpg.Connection, subject: Subject, seconds: float) -> None:
    await conn.execute(
        """UPDATE credential_failures SET locked_until = now() + make_interval(secs => $3)
           WHERE scope = $1 AND subject = $2""",
        *subject,
        seconds,
    )


async def clear(conn: asyncpg.Connection | asyncpg.Pool, subjects: Sequence[Subject]) -> None:
    await conn.execute(
        """DELETE FROM credential_failures
           WHERE (scope, subject) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
        [scope for scope, _ in subjects],
        [subject for _, subject in subjects],
    )


async def prune(conn: asyncpg.Connection, window_seconds: float) -> int:
    """Drops counts whose last failure is older than the window (they would start again anyway) and whose
    lock has run out: callers and unknown logins would otherwise add rows for ever."""
    status: str = await conn.execute(
        """DELETE FROM credential_failures
           WHERE last_failure < now() - make_interval(secs => $1)
             AND (locked_until IS NULL OR locked_until <= now())""",
        window_seconds,
    )
    return int(status.rsplit(" ", 1)[-1])
