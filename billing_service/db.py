"""Database helpers shared by the apps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection

# Django's psycopg backend turns automatic preparing off; statements that ask for it are still prepared.
_PREPARE_ONLY_ON_REQUEST = 1 << 62


@contextmanager
def server_bound_cursor() -> Iterator[psycopg.Cursor]:
    """A psycopg cursor on Django's connection (same session, same transaction) that sends parameters apart
    from the SQL, so that PostgreSQL can keep a statement prepared (``execute(..., prepare=True)``) and
    arrays of a thousand values need no quoting into the text. Errors surface as Django's database errors
    (``django.db.IntegrityError`` and so on), as from Django's own cursors."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _PREPARE_ONLY_ON_REQUEST
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        yield cursor
