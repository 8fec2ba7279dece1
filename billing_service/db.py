"""Database helpers shared by the apps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from typing import Any

import psycopg
from django.db import connection
from django.db.models import Model, QuerySet

# Django's psycopg backend turns automatic preparing off; statements that ask for it are still prepared.
_PREPARE_ONLY_ON_REQUEST = 1 << 62
# Poolers (settings.DATABASE_POOLER) that do not carry a named prepared statement from the server connection it
# was prepared on to the next one: behind them nothing is prepared (README, "PgBouncer").
POOLERS_WITHOUT_PREPARED_STATEMENTS = frozenset({"pgbouncer"})


def prepared_statements_usable() -> bool:
    """Whether the default database's connections may keep statements prepared: directly, or behind a pooler
    that tracks them (PgBouncer >= 1.22.1 with ``max_prepared_statements``)."""
    return connection.settings_dict.get("POOLER", "none") not in POOLERS_WITHOUT_PREPARED_STATEMENTS


@contextmanager
def server_bound_cursor() -> Iterator[psycopg.Cursor]:
    """A psycopg cursor on Django's connection (same session, same transaction) that sends parameters apart
    from the SQL, so that PostgreSQL can keep a statement prepared (``execute(..., prepare=True)``) and
    arrays of a thousand values need no quoting into the text. Errors surface as Django's database errors
    (``django.db.IntegrityError`` and so on), as from Django's own cursors. Behind ``DATABASE_POOLER=pgbouncer``
    ``prepare=True`` is a no-op (see ``prepared_statements_usable``)."""
    # As Django's own cursors do (CONN_HEALTH_CHECKS): a kept connection the database dropped (a restart) is
    # replaced here, or the request's first statement (the token look-up) fails (tests/faults/test_chaos.py).
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    # Set once per connection. Left None (Django's default) behind a pooler without prepared statements: psycopg
    # then ignores ``prepare=True`` and sends every statement unnamed, parsed and planned on each call.
    if raw.prepare_threshold is None and prepared_statements_usable():
        raw.prepare_threshold = _PREPARE_ONLY_ON_REQUEST
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        yield cursor


# --- ORM queries compiled once ----------------------------------------------------------------------------


class Compiled:
    """A query stated with the ORM, compiled to SQL once and run as a prepared statement: for reads of the hot
    path, where compiling the same ORM query on every request would cost more than running it. ``queryset``
    is built with placeholder values, each named in ``params`` ({name: placeholder}); a call passes the real
    values by name. The queryset's ``values_list`` says the columns of the rows returned."""

    def __init__(self, queryset: QuerySet, params: dict[str, Any]) -> None:
        self.queryset = queryset
        self._placeholders = params
        self._sql: str | None = None
        self._order: list[str] = []

    def _compile(self) -> str:
        sql, values = self.queryset.query.sql_with_params()
        names = {v: k for k, v in self._placeholders.items()}
        if len(names) != len(self._placeholders) or any(v not in names for v in values):
            raise ValueError(f"placeholders must be distinct and be the query's only parameters: {values!r}")
        self._order = [names[v] for v in values]
        self._sql = sql
        return sql

    def fetch(self, cursor: Any, **values: Any) -> list[tuple]:
        sql = self._sql or self._compile()
        cursor.execute(sql, [values[name] for name in self._order], prepare=True)
        return cursor.fetchall()

    def instances(self, **values: Any) -> list[Model]:
        """The rows of a queryset of whole model rows (no ``values_list``, no ``select_related``), as instances.
        For models whose columns need no conversion from the database (no ``JSONField``)."""
        with server_bound_cursor() as cursor:
            rows = self.fetch(cursor, **values)
        model = self.queryset.model
        names = [f.attname for f in model._meta.concrete_fields]
        return [model.from_db(self.queryset.db, names, row) for row in rows]
