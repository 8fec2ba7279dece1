"""Waiting on what PostgreSQL shows, never on the clock: a race test proves its race happened.

A test that orders two transactions with ``time.sleep`` passes whether or not the second one really waited for the
first. These helpers return once the database itself shows a backend waiting for a lock (``pg_locks`` /
``pg_stat_activity``), and fail the test when that never happens."""

from __future__ import annotations

import time

from django.db import connections

POLL_SECONDS = 0.01


def wait_until_blocked(pid: int, timeout: float = 30) -> None:
    """Returns once backend ``pid`` waits for a lock (a row, a transaction id or an advisory lock)."""
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [pid])
            if cursor.fetchone():
                return
            time.sleep(POLL_SECONDS)
    raise AssertionError(f"backend {pid} never waited for a lock")


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


def backend_pid() -> int:
    """The backend pid of this thread's default connection (hand it to another thread's ``wait_until_blocked``)."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]
