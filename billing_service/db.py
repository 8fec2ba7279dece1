"""Database helpers shared by the apps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def server_bound_cursor() -> Iterator[psycopg.Cursor]:
    """A psycopg cursor on Django's connection (same session and transaction) that sends parameters
    separately from the SQL. Django's own cursor quotes them into the text, which for arrays of a thousand
    values costs more than the statement; set-based statements (``unnest(%s::uuid[])``) use this one."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        yield cursor
