"""Read replicas: which reads may go to a replica, and which replica (README, "Read replicas").

Every read goes to the primary (``default``) unless the code runs inside ``reads_may_lag()``: the listings of
history (the ledger, the platform's ledger, webhook deliveries), usage statistics, the admin's record lists and its
dashboard enter it (``@lagging_reads`` on a view method or selector, ``LaggingChangelistMixin`` on an admin). There a
read may miss what committed a moment ago. Writes, ``select_for_update``, idempotent replays, the account read after
a debit, authentication and tenancy never enter it, and a read inside a transaction on the primary stays on the
primary even within the context (it may depend on the transaction's own writes and locks).

Replicas are the ``settings.DATABASE_REPLICAS`` aliases (``replica_0``... from ``DATABASE_REPLICA_URLS``). Entering
the context picks one for the whole block, in turns among the healthy ones: a replica that refuses the connection
(or does not answer within its ``connect_timeout``) is skipped for ``DATABASE_REPLICA_RETRY_SECONDS``, as is one
lagging more than ``DATABASE_REPLICA_MAX_LAG_SECONDS`` when that is set (measured at most every
``LAG_CHECK_SECONDS``); with none left the block reads the primary. A replica that fails in the middle of a
``@lagging_reads`` call (it went down, or cancelled the query for a conflict with recovery) has the call run again on
the primary: those calls only read (or write idempotently through the primary).

The raw-SQL helpers (``billing_service.db.server_bound_cursor``, ``Compiled``) always use the primary's
connection: they serve the hot write paths, never the lagging listings, which are ORM reads.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import Error as DjangoDatabaseError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# How often (at most) a replica's lag is measured, per process; the answer is kept meanwhile.
LAG_CHECK_SECONDS = 1.0

# Replication lag in seconds, as a replica sees it: none while it has replayed all it received from a live WAL
# receiver; else the age of the last transaction it replayed (also when it receives nothing: then it cannot know
# what it misses). ``pg_stat_wal_receiver`` shows its row (pid) to any user.
LAG_SQL = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver)
         AND pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
    ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 'Infinity')::float8
END
"""

# The alias reads of the current block go to: None outside ``reads_may_lag()``.
_reading_from: ContextVar[str | None] = ContextVar("billing_reads_may_lag", default=None)
_turn = itertools.count()
# Per process: alias -> time.monotonic() until which it is skipped (down), and alias -> (measured at, lag).
_down_until: dict[str, float] = {}
_lag_seen: dict[str, tuple[float, float]] = {}


def replica_aliases() -> list[str]:
    return list(getattr(settings, "DATABASE_REPLICAS", ()))


def replicas_reset() -> None:
    """Forgets which replicas were down or lagging (tests; an operator's shell after fixing one)."""
    _down_until.clear()
    _lag_seen.clear()


def replica_failed(alias: str) -> None:
    """Skips ``alias`` for ``DATABASE_REPLICA_RETRY_SECONDS`` and drops its connection."""
    retry = float(getattr(settings, "DATABASE_REPLICA_RETRY_SECONDS", 10))
    if _down_until.get(alias, 0) <= time.monotonic():
        logger.warning("replica %s is unreachable: reading from the primary for %gs", alias, retry)
    _down_until[alias] = time.monotonic() + retry
    _lag_seen.pop(alias, None)
    try:
        connections[alias].close()
    except DjangoDatabaseError:
        pass


def replica_lag(alias: str) -> float:
    """The replica's lag now, in seconds (``LAG_SQL``); raises a database error when it cannot be reached."""
    with connections[alias].cursor() as cursor:
        cursor.execute(LAG_SQL)
        return float(cursor.fetchone()[0])


def _usable(alias: str) -> bool:
    """Connects (or checks the kept connection, ``CONN_HEALTH_CHECKS``) and, with a lag limit, measures its lag."""
    conn = connections[alias]
    try:
        conn.close_if_health_check_failed()
        conn.ensure_connection()
        max_lag = getattr(settings, "DATABASE_REPLICA_MAX_LAG_SECONDS", None)
        if max_lag is None:
            return True
        now = time.monotonic()
        seen = _lag_seen.get(alias)
        if seen is None or now - seen[0] >= LAG_CHECK_SECONDS:
            seen = (now, replica_lag(alias))
            _lag_seen[alias] = seen
            if seen[1] > max_lag:
                logger.info("replica %s lags %.1fs (more than %gs): reading from the primary", alias, seen[1],
                            max_lag)
        return seen[1] <= max_lag
    except DjangoDatabaseError:
        replica_failed(alias)
        return False


def replica_choose() -> str:
    """A healthy replica, in turns; the primary when there is none."""
    aliases = replica_aliases()
    if not aliases:
        return DEFAULT_DB_ALIAS
    start, now = next(_turn), time.monotonic()
    for i in range(len(aliases)):
        alias = aliases[(start + i) % len(aliases)]
        if _down_until.get(alias, 0) > now:
            continue
        if _usable(alias):
            return alias
    return DEFAULT_DB_ALIAS


@contextmanager
def reads_may_lag() -> Iterator[str]:
    """Reads of the block may go to a replica (chosen on entering: the alias is yielded, ``default`` when none
    is usable). Nested blocks keep the outer block's choice."""
    if _reading_from.get() is not None:
        yield _reading_from.get()
        return
    token = _reading_from.set(replica_choose())
    try:
        yield _reading_from.get()
    finally:
        _reading_from.reset(token)


@contextmanager
def _reading(alias: str) -> Iterator[None]:
    token = _reading_from.set(alias)
    try:
        yield
    finally:
        _reading_from.reset(token)


def _replica_broke(alias: str) -> bool:
    """After a database error inside a lagging block: whether it came from the replica ``alias`` (Django marks the
    connection an error occurred on); marks it down when its connection is gone."""
    conn = connections[alias]
    if not conn.errors_occurred:
        return False
    if conn.connection is None or not conn.is_usable():
        replica_failed(alias)
    return True


def lagging_reads(func: F) -> F:
    """Runs ``func`` inside ``reads_may_lag()``; when the replica fails meanwhile (a database error on its
    connection), runs it again on the primary. For reads only (a view's GET handler, a selector)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not replica_aliases() or _reading_from.get() is not None:
            with reads_may_lag():
                return func(*args, **kwargs)
        with reads_may_lag() as alias:
            if alias == DEFAULT_DB_ALIAS:
                return func(*args, **kwargs)
            try:
                return func(*args, **kwargs)
            except DjangoDatabaseError:
                if not _replica_broke(alias):
                    raise
                logger.warning("replica %s failed during %s: read again from the primary", alias, func.__qualname__)
        with _reading(DEFAULT_DB_ALIAS):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class ReplicaRouter:
    """``DATABASE_ROUTERS``: reads inside ``reads_may_lag()`` go to the chosen replica (unless the primary's
    connection is inside a transaction), every other read and every write to the primary."""

    def db_for_read(self, model: type, **hints: Any) -> str:
        alias = _reading_from.get()
        if alias is None or alias == DEFAULT_DB_ALIAS or connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return DEFAULT_DB_ALIAS
        return alias

    def db_for_write(self, model: type, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS  # also for an instance read from a replica

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replicas hold the primary's rows

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db in replica_aliases() else None


class LaggingChangelistMixin:
    """A Django admin whose record lists (the changelist's GET) may read from a replica. The page a write redirects
    to (it carries the write's message: a save, an action) reads the primary, so the admin sees what it did; the
    user's permissions are read from the primary before entering, and the page is rendered inside (a
    ``TemplateResponse`` evaluates its querysets when rendered)."""

    def changelist_view(self, request: Any, extra_context: dict | None = None) -> Any:
        parent = super().changelist_view  # type: ignore[misc]
        if request.method != "GET" or not replica_aliases() or _has_pending_messages(request):
            return parent(request, extra_context)
        self.has_view_or_change_permission(request)  # type: ignore[attr-defined]  # caches the user's permissions

        @lagging_reads
        def rendered() -> Any:
            response = parent(request, extra_context)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            return response

        return rendered()


def _has_pending_messages(request: Any) -> bool:
    from django.contrib import messages

    return len(messages.get_messages(request)) > 0  # len() loads them without marking them shown
