"""payments.webhook_fast_path: the first delivery of a plainly paid top-up in two statements. It must write exactly
what the general path (services.webhook_event_process) writes, and hand every other case to it with nothing
written."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.forms.models import model_to_dict

from credits.models import LedgerEntry
from credits.services import credits_grant
from payments import services, webhook_fast_path
from payments.models import Order, OrderStatus, WebhookEvent, WebhookProvider
from tests.conftest import make_member
from tests.payments.conftest import deliver, session_event, start_top_up
from tests.payments.stripe_subscriptions import charge_refunded

pytestmark = pytest.mark.django_db

COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
# what differs between two orders however they were paid
_OWN = {"id", "account", "user", "checkout_url", "provider_checkout_id", "ledger_entry", "created_at",
        "updated_at", "paid_at", "success_url", "cancel_url"}


@pytest.fixture(autouse=True)
def _no_silent_fallback(caplog):
    """A fast path that fails and falls back would pass every other assertion: fail on its log line instead."""
    with caplog.at_level(logging.ERROR, logger="payments.webhook_fast_path"):
        yield
    assert not [r for r in caplog.records if r.name == "payments.webhook_fast_path"]


def general_path(event: dict[str, Any]) -> None:
    pk, _, _ = services.webhook_event_store(provider=WebhookProvider.STRIPE, event=event)
    services.webhook_event_process(event_pk=pk)


def rows(order_id: str) -> tuple[dict, dict, dict]:
    order = Order.objects.get(pk=order_id)
    entry = LedgerEntry.objects.get(pk=order.ledger_entry_id)
    event = WebhookEvent.objects.get(order_id=order_id)
    return (
        {k: v for k, v in model_to_dict(order).items() if k not in _OWN},
        {k: v for k, v in model_to_dict(entry).items()
         if k not in {"id", "account", "reference", "metadata", "idempotency_key", "request_hash", "created_at",
                      "sequence"}},
        {k: v for k, v in model_to_dict(event).items() if k not in {"id", "event_id", "payload", "order", "processed_at"}},
    )


@pytest.mark.parametrize("event_type", [COMPLETED, ASYNC_SUCCEEDED])
def test_writes_what_the_general_path_writes(fake_stripe, platform, event_type):
    fast_member, general_member = make_member(platform, "fay"), make_member(platform, "gus")
    fast_order, general_order = start_top_up(fast_member, "40.00"), start_top_up(general_member, "40.00")

    receipt = webhook_fast_path.receive(session_event(event_type, fast_order))
    general_path(session_event(event_type, general_order))

    assert receipt == webhook_fast_path.Receipt("processed")
    assert rows(fast_order["id"]) == rows(general_order["id"])
    order = Order.objects.get(pk=fast_order["id"])
    entry = LedgerEntry.objects.get(pk=order.ledger_entry_id)
    assert (order.status, order.provider_payment_id, order.provider_customer_id) == ("paid", "pi_test_1", "cus_test_1")
    assert (entry.idempotency_key, entry.reference, entry.metadata["order_id"]) == (
        f"order:{order.id}", f"order:{order.id}", str(order.id))
    # the same fingerprint as the general path's grant: replaying that grant finds this row, no conflict
    replay = credits_grant(account_id=order.account_id, amount=order.credits, payment_amount_usd=order.amount_usd,
                           description="Top-up via stripe", reference=f"order:{order.id}",
                           metadata={"order_id": str(order.id), "channel": "stripe"},
                           idempotency_key=f"order:{order.id}")
    assert (replay.replayed, replay.entry.id) == (True, entry.id)


def test_a_redelivery_is_answered_by_the_first_statement(fake_stripe, platform):
    member = make_member(platform, "rex")
    event = session_event(COMPLETED, start_top_up(member))
    webhook_fast_path.receive(event)

    again = webhook_fast_path.receive(event)

    assert (again.status, again.duplicate) == ("processed", True)
    assert WebhookEvent.objects.filter(event_id=event["id"]).count() == 1
    assert LedgerEntry.objects.filter(account_id=member.account.id).count() == 1


def test_an_event_the_general_path_refused_is_left_to_it(fake_stripe, platform):
    member = make_member(platform, "ned")
    order = start_top_up(member)
    event = session_event(COMPLETED, order, amount_total=1)
    general_path(event)  # refused: the amount differs (stored as failed)

    receipt = webhook_fast_path.receive(event)

    assert (receipt.status, receipt.duplicate) == ("failed", False) and receipt.event_pk is not None


@pytest.mark.parametrize(
    "change",
    [
        {"amount_total": 2499},
        {"currency": "eur"},
        {"session_id": "cs_someone_else"},
        {"payment_status": "unpaid"},
        {"mode": "subscription"},
        {"client_reference_id": "not-an-order"},
        {"client_reference_id": "00000000-0000-0000-0000-000000000000", "metadata": {}},
        {"payment_intent": ""},
    ],
)
def test_anything_not_plain_is_handed_over_with_nothing_written(fake_stripe, platform, change):
    member = make_member(platform, "ida")
    order = start_top_up(member)
    change = dict(change)
    intent = change.pop("payment_intent", "pi_test_1")
    event = session_event(COMPLETED, order, **change)
    event["data"]["object"]["payment_intent"] = intent

    assert webhook_fast_path.receive(event) is None

    assert not WebhookEvent.objects.filter(event_id=event["id"]).exists()
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PENDING
    assert not LedgerEntry.objects.filter(account_id=member.account.id).exists()


def test_an_order_paid_by_another_payment_intent_is_handed_over(fake_stripe, platform):
    member = make_member(platform, "ola")
    order = start_top_up(member)
    Order.objects.filter(pk=order["id"]).update(provider_payment_id="pi_recorded_before")
    event = session_event(COMPLETED, order)  # names pi_test_1

    assert webhook_fast_path.receive(event) is None
    assert not WebhookEvent.objects.filter(event_id=event["id"]).exists()


@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.CANCELED])
def test_an_order_that_is_not_pending_is_handed_over(fake_stripe, platform, status):
    member = make_member(platform, "una")
    order = start_top_up(member)
    if status == OrderStatus.PAID:
        general_path(session_event(COMPLETED, order))
    else:
        Order.objects.filter(pk=order["id"]).update(status=status, canceled_at="2026-01-01T00:00Z")
    event = session_event(COMPLETED, order)  # another event id

    assert webhook_fast_path.receive(event) is None
    assert not WebhookEvent.objects.filter(event_id=event["id"]).exists()


def test_an_order_with_a_parked_refund_is_handed_over_and_the_refund_applied(fake_stripe, platform):
    member = make_member(platform, "pia")
    order = start_top_up(member, "40.00")
    early = charge_refunded(charge_id="ch_early", payment_intent="pi_test_1", amount=4000, amount_refunded=1000,
                            metadata={})
    assert deliver(early).json()["status"] == "ignored"  # parked: no order has pi_test_1 yet
    event = session_event(COMPLETED, order)

    assert webhook_fast_path.receive(event) is None
    assert deliver(event).json()["status"] == "processed"  # the general path

    deltas = sorted(LedgerEntry.objects.filter(account_id=member.account.id).values_list("balance_delta", flat=True))
    assert [str(d) for d in deltas] == ["-10.000000", "40.000000"]
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PARTIALLY_REFUNDED


def test_the_endpoint_takes_the_fast_path(fake_stripe, platform, django_assert_max_num_queries):
    member = make_member(platform, "eve")
    event = session_event(COMPLETED, start_top_up(member))

    with django_assert_max_num_queries(2):  # BEGIN and COMMIT: the two statements go through psycopg directly
        response = deliver(event)

    assert response.json() == {"received": True, "event_id": event["id"], "status": "processed", "duplicate": False}
    with django_assert_max_num_queries(2):
        assert deliver(event).json()["duplicate"] is True


@pytest.mark.django_db(transaction=True)
def test_a_refund_parked_while_the_fast_path_waits_for_the_order_is_not_lost(fake_stripe, platform):
    """A refund handler holding the order's row lock parks its refund (the order is not credited yet) while the
    fast path waits for that lock: once it gets the lock the fast path must see the parked refund and hand over,
    and the general path then credits the order and applies the refund."""
    member = make_member(platform, "wes")
    order = start_top_up(member, "40.00")
    event = session_event(COMPLETED, order)
    refund = charge_refunded(charge_id="ch_race", payment_intent="pi_other", amount=4000, amount_refunded=4000,
                             metadata={"order_id": order["id"]})
    parked, go_on, outcome = threading.Event(), threading.Event(), {}

    def refund_handler() -> None:  # what webhooks._charge_refunded does for an order not credited yet
        try:
            with transaction.atomic():
                Order.objects.select_for_update().get(pk=order["id"])
                WebhookEvent.objects.create(provider="stripe", event_id=refund["id"], type="charge.refunded",
                                            payload=refund, status="ignored", order_id=order["id"],
                                            last_error="parked: waiting for its order")
                parked.set()
                go_on.wait(10)
        finally:
            connections.close_all()

    def fast_path() -> None:
        try:
            outcome["receipt"] = webhook_fast_path.receive(event)
        finally:
            connections.close_all()

    first = threading.Thread(target=refund_handler)
    first.start()
    assert parked.wait(10)
    second = threading.Thread(target=fast_path)
    second.start()
    _wait_for_a_lock_wait()
    go_on.set()
    first.join(10)
    second.join(10)

    assert outcome["receipt"] is None  # handed over, nothing written
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PENDING
    assert deliver(event).json()["status"] == "processed"  # the general path credits and applies the refund
    deltas = sorted(str(d) for d in LedgerEntry.objects.filter(account_id=member.account.id)
                    .values_list("balance_delta", flat=True))
    assert deltas == ["-40.000000", "40.000000"]
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.REFUNDED


def _wait_for_a_lock_wait() -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("the fast path never waited for the order's lock")
