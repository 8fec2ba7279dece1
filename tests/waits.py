"""Waiting on what PostgreSQL shows, never on the clock: a race test proves its race happened.

A test that orders two transactions with ``time.sleep`` passes whether or not the second one really waited for the
first. These helpers return once the database itself shows a backend waiting for a lock (``pg_locks`` /
``pg_stat_activity``), and fail the test when that never happens."""

from __future__ import annotations

import time
import uuid

from django.db import connections

POLL_SECONDS = 0.01


def wait_until_blocked(backend: str | int, timeout: float = 30) -> None:
    """Returns once ``backend`` waits for a lock (a row, a transaction id or an advisory lock): a tag given by
    ``backend_tag`` (found through PgBouncer too), or a backend pid."""
    by = "a.application_name = %s" if isinstance(backend, str) else "a.pid = %s"
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # pg_stat_activity is read once per transaction
            cursor.execute(f"SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE {by} "
                           "AND NOT l.granted", [backend])
            if cursor.fetchone():
                return
            time.sleep(POLL_SECONDS)
    raise AssertionError(f"backend {backend} never waited for a lock")


def wait_for_lock_waiters(count: int, timeout: float = 30) -> None:
    """Returns once at least ``count`` backends of the current database wait for a lock."""
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # pg_stat_activity is read once per transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= count:
                return
            time.sleep(POLL_SECONDS)
    raise AssertionError(f"expected {count} backends waiting for a lock")


def backend_tag() -> str:
    """Tags this thread's default connection (its ``application_name``) and returns the tag, for another thread's
    ``wait_until_blocked``. Not its pid: behind PgBouncer a client's transactions run on whichever server
    connection is free, and PgBouncer sets the client's ``application_name`` on each of them."""
    tag = f"test-{uuid.uuid4().hex[:12]}"
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT set_config('application_name', %s, false)", [tag])
    return tag


def blockers_of(tag: str) -> set[str]:
    """The tags (``backend_tag``) of the backends that the backend tagged ``tag`` waits for."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT b.application_name FROM pg_stat_activity a, pg_stat_activity b "
                       "WHERE a.application_name = %s AND b.pid = ANY(pg_blocking_pids(a.pid))", [tag])
        return {row[0] for row in cursor.fetchall()}
