"""The only place this app locks. Order: a plan's seats on a platform (``plan_seats_lock``, advisory), then seat
subscription rows; all before the credits app's locks (accounts, then holds).

The seats lock is a transaction-scoped PostgreSQL advisory lock keyed by (platform, plan): an assignment counts
the seats and the assignments of the plan, rows that may not exist yet, so no row lock could order two
concurrent first assignments; this one does, and nothing on the credit hot path waits for it."""

from __future__ import annotations

import uuid

from django.db import connection

_PLAN_SEATS = 0x5345  # "SE": the first key of pg_advisory_xact_lock(int, int)


def plan_seats_lock(*, platform_id: int, ai_plan_id: uuid.UUID) -> None:
    """Serializes the assignments and quantity changes of one AI plan's seats on one platform."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_PLAN_SEATS, f"{platform_id}:{ai_plan_id}"])


_CATALOGUE = 0x4350  # "CP"


def catalogue_lock() -> None:
    """Serializes the catalogue's writes (rare: operators), so the checks against other plans hold at commit."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [_CATALOGUE])
