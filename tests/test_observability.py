"""Metrics (/metrics, billing_service/metrics.py) and structured logs with request ids (billing_service/logs.py),
through the real paths: HTTP requests, the ledger, a signed Stripe webhook, a hold's expiry, a recharge, and a real
Celery worker on a real Redis for the request id's way into a task."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from celery import Celery
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from billing_service import metrics
from billing_service.celery import REQUEST_ID_HEADER, _request_id_to_task
from billing_service.celery import app as celery_app
from billing_service.logs import (
    REDACTED,
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    current_request_id,
    request_id_var,
)
from credits.models import CreditAccount, Hold, HoldStatus, LedgerEntry, TransactionType
from credits.services import credits_debit, hold_create, holds_release_expired
from payments.recharge import recharge_charge
from payments.recharge_models import Recharge, RechargeStatus
from tests.api_helpers import error_of, post_json
from tests.conftest import client_for
from tests.payments import conftest as payments_support
from tests.payments.conftest import deliver, session_event, start_top_up
from tests.payments.local_servers import ROOT, free_port, start_redis, stop
from tests.payments.test_auto_recharge_worker import database_url

pytestmark = pytest.mark.django_db

fake_stripe = payments_support.fake_stripe  # the fixture of tests/payments: the Checkout Sessions fake
TOKEN = "metrics-test-token-0123456789"
USAGE_URL = "/api/billing/usage/"


@pytest.fixture
def metrics_on(settings):  # noqa: ANN001, ANN201
    settings.METRICS_TOKEN = TOKEN


def scrape(token: str = TOKEN) -> dict[tuple[str, frozenset], float]:
    """Every sample /metrics serves: {(name, labels): value}."""
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew_by(before: dict, after: dict, name: str, expected: object, **labels: str) -> bool:
    """Whether a counter grew by ``expected``, to the float's precision: the process's counters carry every earlier
    test's amounts (some of 10**14 credits), and a float that large counts in steps of thousands of micros."""
    now = value(after, name, **labels)
    return abs(now - value(before, name, **labels) - float(expected)) <= 4 * math.ulp(now)


def usage(account, amount: str, **extra):  # noqa: ANN001, ANN003, ANN201
    return {"account_id": str(account.id), "request_id": uuid.uuid4().hex, "endpoint": "/v1/chat", "amount": amount,
            **extra}


@contextmanager
def json_lines(*loggers: str, level: int = logging.INFO) -> Iterator[list[dict]]:
    """The JSON lines the settings' console handler would write for these loggers (its filter and formatter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level)
    saved = []
    for name in loggers:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.addHandler(handler)
        logger.setLevel(min(level, logger.getEffectiveLevel()))
    lines: list[dict] = []
    try:
        yield lines
    finally:
        for logger, old_level in saved:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


# --- /metrics: protected ---------------------------------------------------------------------------------------


def test_metrics_is_not_served_while_no_token_is_set(settings):
    settings.METRICS_TOKEN = ""
    error_of(Client().get("/metrics"), 404, "not_found")
    error_of(Client().get("/metrics", HTTP_AUTHORIZATION="Bearer "), 404, "not_found")


@pytest.mark.parametrize("header", [None, "", f"Token {TOKEN}", f"Bearer {TOKEN}x", "Bearer wrong", f"Basic {TOKEN}",
                                    f"Bearer {TOKEN[:-1]}"])
def test_metrics_refuses_a_missing_or_wrong_token(metrics_on, header):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = Client().get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"billing_" not in response.content


def test_metrics_serves_the_exposition_with_the_token(metrics_on):
    samples = scrape()
    names = {name for name, _ in samples}
    # the state read from the database at scrape time
    assert value(samples, "billing_scrape_source_up", source="database") == 1
    for gauge in ("billing_outbound_events_unfanned", "billing_outbound_deliveries_pending",
                  "billing_outbound_deliveries_due", "billing_webhook_events_failed", "billing_holds_active",
                  "billing_holds_overdue", "billing_db_connections_max"):
        assert gauge in names, gauge
    assert sum(v for (name, _), v in samples.items() if name == "billing_db_connections") >= 1  # this test's own
    # the scrape's own request was timed on the way out, so the next scrape shows it under its pattern
    again = scrape()
    assert value(again, "billing_http_request_duration_seconds_count", route="metrics", method="GET",
                 status="2xx") >= 1


def test_the_state_gauges_count_holds_from_the_database(metrics_on, member):
    before = scrape()
    hold_create(account_id=member.account.id, amount=Decimal("5"), expires_in=60)
    overdue = hold_create(account_id=member.account.id, amount=Decimal("1"), expires_in=60)
    Hold.objects.filter(pk=overdue.hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    after = scrape()
    assert value(after, "billing_holds_active") - value(before, "billing_holds_active") == 2
    assert value(after, "billing_holds_overdue") - value(before, "billing_holds_overdue") == 1


def test_the_history_gauges_read_the_months_ahead_and_the_default_partitions(metrics_on, settings, member):
    before = scrape()
    assert value(before, "billing_history_months_ahead") == settings.PARTITION_MONTHS_AHEAD
    assert value(before, "billing_history_default_rows") == 0
    CreditAccount.objects.filter(pk=member.account.pk).update(last_entry_at=datetime(2040, 6, 1, tzinfo=UTC))
    credits_debit(account_id=member.account.pk, amount=Decimal("1"))  # no partition for 2040-06: the default one
    assert value(scrape(), "billing_history_default_rows") == 1


def test_the_broker_queue_length_is_read_from_redis(metrics_on, settings):
    with tempfile.TemporaryDirectory() as workdir:
        redis, broker = start_redis(workdir)
        try:
            settings.CELERY_BROKER_URL = broker
            sender = Celery(broker=broker, set_as_current=False)
            for _ in range(3):
                sender.send_task("credits.tasks.holds_release_expired_task")  # no worker: they wait in the queue
            samples = scrape()
        finally:
            stop(redis)
        assert value(samples, "billing_scrape_source_up", source="broker") == 1
        assert value(samples, "billing_celery_queue_length", queue="celery") == 3
        # the broker down: the scrape still answers, saying so
        down = scrape()
        assert value(down, "billing_scrape_source_up", source="broker") == 0
        assert value(down, "billing_scrape_source_up", source="database") == 1


# --- counters moved by the real paths --------------------------------------------------------------------------


def test_a_debit_and_a_refusal_move_the_ledger_and_refusal_counters(metrics_on, owner, member):
    before = scrape()
    client = client_for(owner)
    assert post_json(client, USAGE_URL, usage(member.account, "1.250000")).status_code == 201
    error_of(post_json(client, USAGE_URL, usage(member.account, "1000")), 402, "insufficient_credits")
    batch = post_json(client, "/api/billing/usage/batch/", {"events": [usage(member.account, "0.5"),
                                                                        usage(member.account, "5000")]})
    assert batch.status_code == 200, batch.content
    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("billing_ledger_postings_total", type="subtract") == 2  # the single debit and the batch's
    assert grew_by(before, after, "billing_ledger_amount_micros_total", 1_750_000, type="subtract")  # 1.25 + 0.5
    assert moved("billing_refusals_total", reason="insufficient_credits") == 2  # the 402 and the batch's event
    # the route label is the URL pattern, not the path
    assert moved("billing_http_request_duration_seconds_count", route="api/billing/usage/", method="POST",
                 status="2xx") == 1
    assert moved("billing_http_request_duration_seconds_count", route="api/billing/usage/", method="POST",
                 status="4xx") == 1
    assert moved("billing_http_request_duration_seconds_count", route="api/billing/usage/batch/", method="POST",
                 status="2xx") == 1


def test_the_route_label_is_the_pattern_with_its_parameters_named(metrics_on, owner, member):
    before = scrape()
    client = client_for(owner)
    for _ in range(2):
        hold = hold_create(account_id=member.account.id, amount=Decimal("1"))
        assert client.get(f"/api/billing/reservations/{hold.hold.pk}/").status_code == 200
    assert Client().get(f"/no/such/path/{uuid.uuid4()}").status_code == 404
    after = scrape()
    routes = {dict(labels)["route"] for (name, labels) in after
              if name == "billing_http_request_duration_seconds_count"}
    # (earlier tests of the same process may have counted the hold's capture/ and release/ routes too)
    detail = [route for route in routes if re.fullmatch(r"api/billing/reservations/<[\w:]+>/", route)]
    assert len(detail) == 1, routes
    assert not any(re.search(r"[0-9a-f]{8}-|\(\?P|[\^$\\]", route) for route in routes), routes  # no id, no regex
    assert value(after, "billing_http_request_duration_seconds_count", route=detail[0], method="GET",
                 status="2xx") - value(before, "billing_http_request_duration_seconds_count", route=detail[0],
                                       method="GET", status="2xx") == 2
    assert value(after, "billing_http_request_duration_seconds_count", route="<unmatched>", method="GET",
                 status="4xx") >= 1


def test_a_signed_stripe_webhook_moves_the_webhook_and_ledger_counters_and_logs_its_ids(metrics_on, member,
                                                                                       fake_stripe):
    order = start_top_up(member, "25.00")
    event = session_event("checkout.session.completed", order)
    before = scrape()
    with json_lines("payments.webhooks.events") as lines:
        response = deliver(event)
    assert response.status_code == 200 and response.json()["status"] == "processed", response.content
    assert deliver(event).json()["duplicate"] is True  # Stripe delivers it again
    after = scrape()
    labels = {"provider": "stripe", "type": "checkout.session.completed"}
    assert value(after, "billing_webhook_events_total", outcome="processed", **labels) - value(
        before, "billing_webhook_events_total", outcome="processed", **labels) == 1
    assert value(after, "billing_webhook_events_total", outcome="duplicate", **labels) - value(
        before, "billing_webhook_events_total", outcome="duplicate", **labels) == 1
    assert value(after, "billing_ledger_postings_total", type="add") - value(
        before, "billing_ledger_postings_total", type="add") == 1
    credited = LedgerEntry.objects.get(account=member.account, transaction_type=TransactionType.ADD,
                                       idempotency_key__startswith="order:")
    assert grew_by(before, after, "billing_ledger_amount_micros_total", credited.balance_delta * 10**6, type="add")
    [line] = [line for line in lines if line["message"] == "webhook event processed"]
    assert line["provider"] == "stripe" and line["event_id"] == event["id"]
    assert line["event_type"] == "checkout.session.completed" and line["order_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])  # the request's, generated: it sent none


def test_a_hold_released_by_expiry_and_a_cancelled_recharge_are_counted(metrics_on, member):
    before = scrape()
    hold = hold_create(account_id=member.account.id, amount=Decimal("2"), expires_in=1)
    assert holds_release_expired(now=timezone.now() + timedelta(seconds=5)) == 1
    assert Hold.objects.get(pk=hold.hold.pk).status == HoldStatus.EXPIRED
    recharge = Recharge.objects.create(account=member.account, amount_usd=Decimal("10"), credits=Decimal("10"),
                                       provider_customer_id="cus_1", provider_payment_method_id="pm_1")
    with json_lines("payments.recharge") as lines:
        assert recharge_charge(recharge_id=recharge.pk).status == RechargeStatus.FAILED  # auto-recharge is off
    after = scrape()
    assert value(after, "billing_holds_settled_total", status="expired") - value(
        before, "billing_holds_settled_total", status="expired") == 1
    assert value(after, "billing_ledger_postings_total", type="release") - value(
        before, "billing_ledger_postings_total", type="release") == 1
    assert value(after, "billing_recharge_transitions_total", state="failed", reason="cancelled") - value(
        before, "billing_recharge_transitions_total", state="failed", reason="cancelled") == 1
    [line] = [line for line in lines if line["message"] == "recharge failed"]
    assert line["recharge_id"] == str(recharge.pk) and line["account_id"] == str(member.account.id)
    assert line["failure_reason"] == "cancelled" and line["level"] == "INFO"


# --- request ids and JSON lines ------------------------------------------------------------------------------


def test_a_request_id_is_taken_from_the_header_echoed_and_in_every_log_line_of_the_request(member):
    with json_lines("django.request", level=logging.WARNING) as lines:
        response = client_for(member).get("/api/billing/reservations/nope/", HTTP_X_REQUEST_ID="client-req.42:a_b")
    assert response.status_code == 403  # a member reads no reservation by id: logged by django.request
    assert response["X-Request-ID"] == "client-req.42:a_b"
    [line] = lines
    assert set(line) >= {"time", "level", "logger", "message", "request_id"}
    assert line["request_id"] == "client-req.42:a_b" and line["level"] == "WARNING"
    assert line["logger"] == "django.request" and line["status_code"] == 403
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert current_request_id() is None  # nothing leaks past the request


@pytest.mark.parametrize("sent", [None, "", "x" * 65, "has space", "semi;colon", "new\nline", "é", "<script>"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_generated_one(sent):
    extra = {} if sent is None else {"HTTP_X_REQUEST_ID": sent}
    first = Client().get("/healthz", **extra)["X-Request-ID"]
    second = Client().get("/healthz", **extra)["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_no_secret_reaches_a_log_line(member):
    secret = "tok_" + uuid.uuid4().hex
    with json_lines("django.request", "billing_service", level=logging.DEBUG) as lines:
        response = Client().get("/api/billing/account/", HTTP_AUTHORIZATION=f"Token {secret}",
                                HTTP_X_REQUEST_ID="no-secrets")
        logging.getLogger("billing_service.test").info(
            "card saved", extra={"account_id": "a1", "card_number": "4242424242424242", "api_key": "sk_live_x",
                                 "nested": {"authorization": "Bearer zzz", "kept": 1}, "request": object()})
    assert response.status_code == 401
    text = json.dumps(lines)
    assert secret not in text and "4242424242424242" not in text and "sk_live_x" not in text and "zzz" not in text
    refused = next(line for line in lines if line["logger"] == "django.request")
    assert refused["request_id"] == "no-secrets" and "request" not in refused  # the request object is left out
    saved = next(line for line in lines if line["message"] == "card saved")
    assert saved["card_number"] == REDACTED and saved["api_key"] == REDACTED
    assert saved["nested"] == {"authorization": REDACTED, "kept": 1} and saved["account_id"] == "a1"


def test_the_formatters_write_one_line_per_record_and_the_text_one_reads(member):
    record = logging.LogRecord("billing_service.x", logging.ERROR, __file__, 1, "boom %s", ("here",), None)
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        record.exc_info = sys.exc_info()
    record.platform_id = 7
    token = request_id_var.set("rid-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "boom here" and parsed["request_id"] == "rid-1" and parsed["platform_id"] == 7
    assert "ValueError: line one" in parsed["exception"]
    text = TextFormatter().format(record)
    assert " ERROR billing_service.x [rid-1] boom here platform_id=7" in text.splitlines()[0]


# --- the request id in Celery tasks ------------------------------------------------------------------------------


@celery_app.task(name="tests.test_observability.seen_by_task")
def seen_by_task() -> str | None:
    return current_request_id()


def test_an_eager_task_runs_under_its_callers_request_id_and_publishing_puts_it_in_a_header():
    assert celery_app.conf.task_always_eager  # no broker in the tests: tasks run in-process
    token = request_id_var.set("caller-rid")
    try:
        assert seen_by_task.delay().get() == "caller-rid"
        assert current_request_id() == "caller-rid"  # restored after the task
        headers: dict = {}
        _request_id_to_task(headers=headers)  # what before_task_publish does for a task sent to a broker
        assert headers == {REQUEST_ID_HEADER: "caller-rid"}
    finally:
        request_id_var.reset(token)
    no_request: dict = {}
    _request_id_to_task(headers=no_request)
    assert no_request == {}
    generated = seen_by_task.delay().get()  # a task run outside any request gets an id of its own
    assert re.fullmatch(r"[0-9a-f]{32}", generated) and current_request_id() is None


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_task_under_the_request_id_that_sent_it_and_serves_its_counters(member):
    hold_create(account_id=member.account.id, amount=Decimal("3"), expires_in=1)
    Hold.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    metrics_port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        redis, broker = start_redis(workdir)
        env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": broker, "CONN_MAX_AGE": "0",
               "LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "METRICS_WORKER_BIND": f"127.0.0.1:{metrics_port}"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # solo pool: one process
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "billing_service", "worker", "--pool=solo", "--concurrency=1",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        try:
            sender = Celery(broker=broker, set_as_current=False)
            token = request_id_var.set("from-the-request-1")
            try:
                sender.send_task("credits.tasks.holds_release_expired_task")
            finally:
                request_id_var.reset(token)
            sender.send_task("credits.tasks.ledger_rollups_refresh_task")  # as the beat sends: no request id
            deadline = time.monotonic() + 60
            while Hold.objects.filter(status=HoldStatus.ACTIVE).exists() or not _served(metrics_port):
                assert time.monotonic() < deadline, "the worker did not release the hold"
                time.sleep(0.05)
            served = _scrape_worker(metrics_port, until=lambda s: s.get(("billing_holds_settled_total",
                                                                         frozenset({("status", "expired")}))))
        finally:
            stop(worker)
            output = worker.stdout.read().decode(errors="replace") if worker.stdout else ""
            stop(redis)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    # every log record is a JSON line (Celery's banner and warnings are printed, not logged)
    assert lines and not re.search(r"^\[\d{4}-.*(INFO|WARNING|ERROR)", output, re.M), output
    done = {line.get("task"): line for line in lines if " succeeded in " in line["message"]}
    assert done["credits.tasks.holds_release_expired_task"]["request_id"] == "from-the-request-1", output
    assert done["credits.tasks.holds_release_expired_task"]["task_id"]
    beat = done["credits.tasks.ledger_rollups_refresh_task"]["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", beat), output  # a fresh one for a task no request sent
    assert served[("billing_holds_settled_total", frozenset({("status", "expired")}))] == 1
    assert served[("billing_ledger_postings_total", frozenset({("type", "release")}))] == 1
    assert not any(name.startswith("billing_holds_active") for name, _ in served)  # state gauges: web's only


def _served(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()  # noqa: S310 - local
    except OSError:
        return False
    return True


def _scrape_worker(port: int, until, timeout: float = 30) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()  # noqa: S310
        samples = {(sample.name, frozenset(sample.labels.items())): sample.value
                   for family in text_string_to_metric_families(text) for sample in family.samples}
        if until(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_route_labels_drop_regex_syntax():
    assert metrics.route_label("api/billing/^accounts/(?P<pk>[^/.]+)/$") == "api/billing/accounts/<pk>/"
    assert metrics.route_label("api/billing/reservations/<uuid:hold_id>/") == "api/billing/reservations/<uuid:hold_id>/"


def test_the_grafana_dashboard_is_valid_and_names_only_metrics_we_serve(metrics_on, member):
    dashboard = json.loads((ROOT / "docs" / "grafana" / "billing-service.json").read_text())
    assert dashboard["uid"] and dashboard["panels"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    hold_create(account_id=member.account.id, amount=Decimal("1"))  # every labelled family has a sample
    scrape()  # times a request: the latency histogram has a sample
    served = {name for name, _ in scrape()} | {"billing_celery_queue_length"}  # the broker's: with a broker only
    served |= {f"billing_{name}_total" for name in ("ledger_postings", "ledger_amount_micros", "refusals",
                                                    "webhook_events", "recharge_transitions", "holds_settled")}
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs and all(target["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"]
                         for target in panel.get("targets", []))
    named = {name for expr in exprs for name in re.findall(r"\bbilling_[a-z_]+", expr)}
    assert named - served == set()
    assert {"billing_ledger_postings_total", "billing_refusals_total", "billing_webhook_events_total",
            "billing_recharge_transitions_total", "billing_holds_settled_total", "billing_outbound_deliveries_pending",
            "billing_celery_queue_length", "billing_db_connections",
            "billing_http_request_duration_seconds_bucket"} <= named
