"""Nothing is committed unless the response that acknowledges it can be built.

Each write below commits, then sends background work (an auto-recharge charge when a debit leaves the account
below its threshold; reading a saved card from Stripe). With the broker down, sending fails: the request must
still answer what it committed, and the committed rows stay. (A stored time before year 1 in UTC, which could
not be written back, is refused before anything is written: tests/hostile/test_strict_input.py.)"""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import pytest

from billing_service.celery import app as celery_app
from credits.models import CreditAccount, LedgerEntry, ModelPrice
from credits.services import hold_create
from payments.recharge_models import SavedPaymentMethod
from tests.api_helpers import post_json
from tests.conftest import client_for
from tests.payments.conftest import deliver, fake_stripe  # noqa: F401 - fixture
from tests.payments.recharge_support import auto_recharge_set
from tests.payments.stripe_subscriptions import next_id

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
BROKER_CONF = ("broker_url", "task_always_eager", "task_publish_retry", "broker_connection_timeout",
               "broker_connection_retry", "broker_connection_max_retries", "redis_socket_connect_timeout")


@pytest.fixture
def broker_down():  # noqa: ANN201
    """Celery sends to a broker that refuses connections (nothing listens on port 9)."""
    saved = {name: celery_app.conf[name] for name in BROKER_CONF}
    celery_app.conf.update(
        broker_url="redis://127.0.0.1:9/0", task_always_eager=False, task_publish_retry=False,
        broker_connection_timeout=1, broker_connection_retry=False, broker_connection_max_retries=0,
        redis_socket_connect_timeout=1,
    )
    try:
        yield
    finally:
        celery_app.conf.update(saved)
        celery_app.pool.force_close_all()


@pytest.fixture
def low(member) -> CreditAccount:  # noqa: ANN001
    """Auto-recharge on, threshold above the balance: every debit asks for a recharge."""
    auto_recharge_set(member.account.pk, enabled=True, threshold_usd=D("500"), amount_usd=D("20"))
    return member.account


def _usage(client, account, request_id: str, **fields):  # noqa: ANN001, ANN003, ANN202
    return post_json(client, "/api/billing/usage/", {"account_id": str(account.id), "request_id": request_id,
                                                      "endpoint": "/chat", **fields})


WRITES = {
    # the one-statement path (autocommit): the hook runs right after the statement committed
    "usage, one statement": lambda c, a: _usage(c, a, "u-1", amount="1.50"),
    # the same with a cost finer than a quantum (the remainder read, then compared and set)
    "usage, rate card": lambda c, a: _usage(c, a, "u-3", model="m-1", input_tokens=3_000_001),
    # in a transaction: the hook runs at commit
    "batch": lambda c, a: post_json(c, "/api/billing/usage/batch/", {"events": [
        {"account_id": str(a.id), "request_id": "b-1", "endpoint": "/chat", "amount": "2"}]}),
    "capture": lambda c, a: post_json(
        c, f"/api/billing/reservations/{hold_create(account_id=a.id, amount=D(5), idempotency_key='h').hold.id}"
        "/capture/", {"endpoint": "/chat", "amount": "3"}),
    "manual adjustment": lambda c, a: post_json(
        c, "/api/billing/admin/credits/manual/", {"account_id": str(a.id), "amount": "-4", "description": "fix"}),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_debit_is_acknowledged_when_its_recharge_cannot_be_sent(owner, low, broker_down, caplog, write):
    ModelPrice.objects.create(platform=low.platform, model="m-1", input_per_million=D("0.40"),
                              output_per_million=D("0"), effective_from="2020-01-01T00:00:00Z")
    rows_before = LedgerEntry.objects.filter(account=low).count()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        response = WRITES[write](client_for(owner), low)
    assert response.status_code in (200, 201), response.content
    assert time.monotonic() - started < 30
    assert LedgerEntry.objects.filter(account=low, transaction_type__in=["subtract", "adjustment"]).count() >= 1
    assert LedgerEntry.objects.filter(account=low).count() > rows_before
    assert any("recharge_charge_task" in record.getMessage() for record in caplog.records), caplog.text


def test_a_webhook_that_saves_a_card_is_acknowledged_when_the_card_read_cannot_be_sent(
    fake_stripe, member, broker_down, caplog  # noqa: F811
):
    platform_id = member.account.platform_id
    session = {
        "id": next_id("cs"), "object": "checkout.session", "mode": "setup", "status": "complete",
        "payment_status": "no_payment_required", "customer": "cus_setup_1", "setup_intent": "seti_test_1",
        "metadata": {"account_id": str(member.account.id), "purpose": "auto_recharge_payment_method",
                     "platform_id": str(platform_id)},
    }
    delivery = {"id": next_id("evt"), "object": "event", "type": "checkout.session.completed", "livemode": False,
                "api_version": "2025-09-30.clover", "created": int(time.time()), "data": {"object": session}}
    with caplog.at_level(logging.ERROR):
        response = deliver(delivery)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "processed"
    assert any("payment_method_from_setup_task" in record.getMessage() for record in caplog.records)
    # not saved from this event; its setup_intent.succeeded (sent with it by Stripe) saves the card on its own
    assert not SavedPaymentMethod.objects.exists()


def test_a_new_rate_card_version_is_answered_from_its_own_transaction(owner):
    """The answer (the version's status, when the next one takes over, who added it) is read inside the write's
    transaction: nothing is queried once it committed, so no failure can follow the commit (a retry of a create
    that was answered 503 would add a second version)."""
    from django.db import connection

    statements: list[tuple[bool, str]] = []

    def record(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        statements.append((connection.in_atomic_block, sql))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        response = post_json(client_for(owner), "/api/billing/admin/models/",
                             {"model": "m-new", "input_per_million": "1", "output_per_million": "2"})
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "current" and response.json()["created_by"] == "olivia"
    first_inside = next(i for i, (inside, _) in enumerate(statements) if inside)
    after = [sql for inside, sql in statements[first_inside:] if not inside]
    assert after == [], after
