"""Prometheus metrics (``prometheus_client``), served at ``/metrics`` behind ``METRICS_TOKEN``.

Counted in the process where they happen (a counter increment, no query):

- ``billing_http_request_duration_seconds{route, method, status}``: every request, by the URL pattern it matched
  (``api/billing/accounts/<pk>/``, never the raw path: bounded by the URL configuration; ``<unmatched>`` for a path
  no pattern matched) and the status class (``2xx``...). ``RequestMetricsMiddleware``.
- ``billing_ledger_postings_total{type}`` and ``billing_ledger_amount_micros_total{type}``: ledger rows written
  (``credits.ledger``: its every write goes through it), and the size of their balance change in millionths of a
  credit (an integer: exact while below 2**53, about 9 billion credits; an operational figure, the ledger is the
  record).
- ``billing_refusals_total{reason}``: domain refusals answered (the error code: ``insufficient_credits``,
  ``budget_exceeded``, ``model_not_entitled``, ``balance_limit_exceeded``, ``hold_expired``, ``idempotency_conflict``...),
  by the API's error handler and per refused event of a usage batch.
- ``billing_webhook_events_total{provider, type, outcome}``: provider deliveries and reprocessing, by the stored
  outcome (``processed``, ``ignored``, ``parked``, ``failed``), ``duplicate`` (already done) or ``error`` (answered
  500, delivered again).
- ``billing_recharge_transitions_total{state, reason}``: auto-recharges entering a state (``pending`` when recorded,
  ``processing``, ``succeeded``, ``failed`` with its ``failure_reason``).
- ``billing_holds_settled_total{status}``: holds settled as ``captured``, ``released`` or ``expired``.

Read from the database (and the broker) at scrape time by ``StateCollector``, one round trip of counts over partial
indexes, under a 2 s statement timeout: ``billing_outbound_events_unfanned``, ``billing_outbound_deliveries_pending``,
``billing_outbound_deliveries_due``, ``billing_webhook_events_failed``, ``billing_holds_active``,
``billing_holds_overdue`` (active past their expiry: the expiry task's backlog), ``billing_db_connections{state}``
and ``billing_db_connections_max`` (this database's backends in ``pg_stat_activity``: what every process's
connections use of the server's ``max_connections``), ``billing_celery_queue_length{queue}`` (``LLEN`` of the
Redis broker's queue, when ``CELERY_BROKER_URL`` is set) and ``billing_scrape_source_up{source}`` (0: that source did
not answer; its gauges are left out).

Several processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (an empty directory of this host, cleared before the
server starts: ``make run`` does), every process writes its counters there (prometheus_client's multiprocess mode)
and ``/metrics`` sums them, whichever gunicorn worker answers. Without it each process counts alone (one process:
``runserver``, the tests). A Celery worker in a container of its own serves its counters on ``METRICS_WORKER_BIND``
(``host:port``, plain HTTP without a token: a port the network keeps internal; its prefork children need
``PROMETHEUS_MULTIPROC_DIR`` too, a directory of the worker's own).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from functools import lru_cache
from typing import Any

# prometheus_client chooses its multiprocess mode at import, from the variable's presence: an empty value would
# turn it on with no directory.
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)
else:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.http import Http404, HttpRequest, HttpResponse  # noqa: E402
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

logger = logging.getLogger(__name__)

REQUEST_LATENCY = Histogram(
    "billing_http_request_duration_seconds", "Time to answer a request, by URL pattern, method and status class.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LEDGER_POSTINGS = Counter("billing_ledger_postings", "Ledger rows written, by transaction type.", ["type"])
LEDGER_AMOUNT = Counter(
    "billing_ledger_amount_micros", "Balance change of the ledger rows written (absolute), in millionths of a credit.",
    ["type"],
)
REFUSALS = Counter("billing_refusals", "Domain refusals answered, by error code.", ["reason"])
WEBHOOK_EVENTS = Counter(
    "billing_webhook_events", "Provider webhook events received or reprocessed, by outcome.",
    ["provider", "type", "outcome"],
)
RECHARGE_TRANSITIONS = Counter(
    "billing_recharge_transitions", "Auto-recharges entering a state (failed: with its reason).", ["state", "reason"],
)
HOLDS_SETTLED = Counter("billing_holds_settled", "Holds settled, by how (captured, released, expired).", ["status"])

# Label children by label values: a dict look-up on the hot path instead of ``labels()``'s validation and lock.
_postings: dict[str, tuple[Any, Any]] = {}
_latency: dict[tuple[str, str, str], Any] = {}


def ledger_posted(transaction_type: str, balance_delta: Decimal) -> None:
    """One ledger row written (``credits.ledger``)."""
    children = _postings.get(transaction_type)
    if children is None:
        children = _postings[transaction_type] = (LEDGER_POSTINGS.labels(transaction_type),
                                                  LEDGER_AMOUNT.labels(transaction_type))
    children[0].inc()
    if balance_delta:
        children[1].inc(abs(int(balance_delta.scaleb(6))))


def ledger_posted_many(rows: Iterable[tuple[str, Decimal]]) -> None:
    """Rows written at once (a batch's COPY): (transaction type, balance change) each."""
    for transaction_type, balance_delta in rows:
        ledger_posted(transaction_type, balance_delta)


def refusal(code: str) -> None:
    """A domain refusal answered (``billing_service.exceptions``), by its error code."""
    REFUSALS.labels(code).inc()


def refusals_of(errors: Iterable[Any]) -> None:
    """The refusals of a batch's rejected events (each a ``DomainError``)."""
    for error in errors:
        refusal(error.code)


def webhook_outcome(provider: str, event_type: str, outcome: str) -> None:
    WEBHOOK_EVENTS.labels(provider, event_type or "", outcome).inc()


def recharge_transition(state: str, reason: str = "", count: int = 1) -> None:
    if count:
        RECHARGE_TRANSITIONS.labels(str(state), str(reason or "")).inc(count)


def hold_settled(status: str) -> None:
    HOLDS_SETTLED.labels(str(status)).inc()


# --- requests ---------------------------------------------------------------------------------------------------

_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


@lru_cache(maxsize=1024)
def route_label(route: str) -> str:
    """A matched pattern as a label: a regex pattern's groups named like a path converter's (``<pk>``), anchors
    gone: ``api/billing/^accounts/(?P<pk>[^/.]+)/$`` is ``api/billing/accounts/<pk>/``."""
    return _GROUP.sub(r"<\1>", route).replace("^", "").replace("$", "").replace("\\", "") or "/"


class RequestMetricsMiddleware:
    """Outermost in ``MIDDLEWARE``: times the whole answer, every other middleware included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        key = (route_label(match.route) if match is not None and match.route else "<unmatched>",
               request.method if request.method in _METHODS else "other", f"{response.status_code // 100}xx")
        child = _latency.get(key)
        if child is None:
            child = _latency[key] = REQUEST_LATENCY.labels(*key)
        child.observe(time.perf_counter() - started)
        return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# --- what is read at scrape time -------------------------------------------------------------------------------

def _table(app_label: str, model: str) -> str:
    from django.apps import apps  # by name: the models live in the apps above this layer

    return apps.get_model(app_label, model)._meta.db_table


class StateCollector:
    """Gauges read when Prometheus scrapes (see the module docstring)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("billing_scrape_source_up", "1 when the source answered the scrape.", labels=["source"])
        families = [*self._database(up), *self._broker(up)]
        yield up
        yield from families

    def describe(self) -> list:
        return []  # read at scrape time only: registering it queries nothing

    def _database(self, up: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
        try:
            counts, connections, max_connections = _database_state()
        except Exception:
            logger.warning("metrics: the database did not answer the scrape", exc_info=True)
            up.add_metric(["database"], 0)
            return
        up.add_metric(["database"], 1)
        for name, help_text, value in counts:
            yield GaugeMetricFamily(name, help_text, value=value)
        by_state = GaugeMetricFamily("billing_db_connections", "Backends connected to this database, by state.",
                                     labels=["state"])
        for state, count in connections:
            by_state.add_metric([state or "unknown"], count)
        yield by_state
        yield GaugeMetricFamily("billing_db_connections_max", "The server's max_connections.", value=max_connections)

    def _broker(self, up: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
        url = getattr(settings, "CELERY_BROKER_URL", "")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return
        try:
            lengths = _queue_lengths(url)
        except Exception:
            logger.warning("metrics: the broker did not answer the scrape", exc_info=True)
            up.add_metric(["broker"], 0)
            return
        up.add_metric(["broker"], 1)
        depth = GaugeMetricFamily("billing_celery_queue_length", "Tasks waiting in the broker's queue.",
                                  labels=["queue"])
        for queue, length in lengths:
            depth.add_metric([queue], length)
        yield depth


_GAUGES = (
    ("billing_outbound_events_unfanned", "Outbound events recorded, not yet fanned out to deliveries."),
    ("billing_outbound_deliveries_pending", "Outbound webhook deliveries pending (not delivered, not failed)."),
    ("billing_outbound_deliveries_due", "Pending outbound deliveries whose next attempt is due."),
    ("billing_webhook_events_failed", "Provider webhook events stored failed, waiting to be reprocessed."),
    ("billing_holds_active", "Holds active (credits reserved)."),
    ("billing_holds_overdue", "Active holds past their expiry, not yet released by the expiry task."),
    ("billing_history_months_ahead", "Months of the ledger's partitions created after the current one (0: the "
                                     "next month's rows will land in the default partition)."),
    ("billing_history_default_rows", "Ledger rows and usage events in the default partitions, up to 1000 each "
                                     "(should be 0: a month without its partition)."),
)


def _database_state() -> tuple[list[tuple[str, str, int]], list[tuple[str, int]], int]:
    """One round trip of counts, each over a partial or leading-column index, within a 2 s statement timeout."""
    events, deliveries = _table("accounts", "OutboundEvent"), _table("accounts", "OutboundDelivery")
    webhooks, holds = _table("payments", "WebhookEvent"), _table("credits", "Hold")
    ledger, usage = _table("credits", "LedgerEntry"), _table("credits", "UsageEvent")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '2s'")
        cursor.execute(
            f"SELECT (SELECT count(*) FROM {events} WHERE NOT fanned_out),"  # noqa: S608 - our own table names
            f" (SELECT count(*) FROM {deliveries} WHERE status = 'pending'),"
            f" (SELECT count(*) FROM {deliveries} WHERE status = 'pending' AND next_attempt_at <= now()),"
            f" (SELECT count(*) FROM {webhooks} WHERE status = 'failed'),"
            f" (SELECT count(*) FROM {holds} WHERE status = 'active'),"
            f" (SELECT count(*) FROM {holds} WHERE status = 'active' AND expires_at <= now()),"
            f" (SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = "
            f"'{ledger}'::regclass AND c.relname > '{ledger}_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM') "
            f"AND c.relname <> '{ledger}_default'),"
            f" (SELECT count(*) FROM (SELECT 1 FROM {ledger}_default LIMIT 1000) d)"
            f" + (SELECT count(*) FROM (SELECT 1 FROM {usage}_default LIMIT 1000) d),"
            " current_setting('max_connections')::int"
        )
        row = cursor.fetchone()
        cursor.execute(
            "SELECT state, count(*) FROM pg_stat_activity WHERE datname = current_database() GROUP BY state"
        )
        connections = cursor.fetchall()
    counts = [(name, help_text, value) for (name, help_text), value in zip(_GAUGES, row[:-1], strict=True)]
    return counts, connections, row[-1]


def _queue_lengths(url: str) -> list[tuple[str, int]]:
    import redis  # celery[redis]'s client

    queues = [getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")]
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return [(queue, int(client.llen(queue))) for queue in queues]
    finally:
        client.close()


# --- the endpoint ------------------------------------------------------------------------------------------------

class _Process:
    """This process's metrics (the default registry: ours and prometheus_client's process and platform ones)."""

    def collect(self) -> Iterator[Any]:
        return REGISTRY.collect()

    def describe(self) -> list:
        return []


@lru_cache(maxsize=2)
def registry(*, state: bool = True) -> CollectorRegistry:
    """What a scrape reads: every process's counters (multiprocess mode) or this one's, and the state gauges."""
    scraped = CollectorRegistry(auto_describe=False)
    if MULTIPROC_DIR:
        MultiProcessCollector(scraped, path=MULTIPROC_DIR)
    else:
        scraped.register(_Process())
    if state:
        scraped.register(StateCollector())
    return scraped


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: 404 while ``METRICS_TOKEN`` is unset (nothing is exposed by default), 401 without
    ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time), else the exposition text."""
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token:
        raise Http404
    if not _authorized(request, token):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def worker_serve() -> None:
    """A Celery worker's own counters on ``METRICS_WORKER_BIND`` (``host:port``; unset: not served)."""
    bind = getattr(settings, "METRICS_WORKER_BIND", "")
    if not bind:
        return
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1", registry=registry(state=False))
    logger.info("worker metrics served", extra={"bind": bind})
