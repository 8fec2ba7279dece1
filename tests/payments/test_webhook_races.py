"""Races of one delivery against another, waited for on PostgreSQL's own locks (tests/waits.py), never on the clock."""

from __future__ import annotations

import threading

import pytest
from django.db import connections, transaction

from credits.models import LedgerEntry
from payments.models import Order, OrderStatus, WebhookEvent
from payments.providers.stripe_events import event_lookups
from payments.webhooks.events import webhook_event_receive
from tests.conftest import make_member
from tests.payments.conftest import deliver, session_event, start_top_up
from tests.payments.stripe_subscriptions import charge_refunded
from tests.waits import backend_tag, wait_until_blocked

COMPLETED = "checkout.session.completed"


@pytest.mark.django_db(transaction=True)
def test_a_refund_parked_while_the_payment_waits_for_the_order_is_applied(fake_stripe, platform):
    """A refund handler holding the order's row lock parks its refund (the order is not credited yet) while the
    payment's delivery waits for that lock: once it gets the lock, the payment must see the parked refund (its
    look-up runs after the lock, with a fresh snapshot), credit the order and apply the refund."""
    member = make_member(platform, "wes")
    order = start_top_up(member, "40.00")
    event = session_event(COMPLETED, order)
    refund = charge_refunded(charge_id="ch_race", payment_intent="pi_other", amount=4000, amount_refunded=4000,
                             metadata={"order_id": order["id"]})
    parked, go_on, outcome = threading.Event(), threading.Event(), {}

    def refund_handler() -> None:  # what the charge.refunded handler does for an order not credited yet
        try:
            with transaction.atomic():
                Order.objects.select_for_update().get(pk=order["id"])
                lookups = event_lookups(refund)
                WebhookEvent.objects.create(
                    provider="stripe", event_id=refund["id"], type="charge.refunded", payload=refund,
                    status="parked", order_id=order["id"], last_error="waiting for its order",
                    object_id=lookups.object_id, payment_intent_id=lookups.payment_intent_id,
                    order_ref=lookups.order_ref,
                )
                parked.set()
                go_on.wait(30)
        finally:
            connections.close_all()

    def payment() -> None:
        try:
            outcome["pid"] = backend_tag()
            outcome["result"] = webhook_event_receive(provider="stripe", event=event)
        finally:
            connections.close_all()

    first = threading.Thread(target=refund_handler)
    first.start()
    assert parked.wait(30)
    second = threading.Thread(target=payment)
    second.start()
    while "pid" not in outcome:
        second.join(0.01)
    wait_until_blocked(outcome["pid"])  # the race is on: the payment waits for the order the refund holds
    go_on.set()
    first.join(30)
    second.join(30)

    assert outcome["result"].status == "processed"
    deltas = sorted(str(d) for d in LedgerEntry.objects.filter(account_id=member.account.id)
                    .values_list("balance_delta", flat=True))
    assert deltas == ["-40.000000", "40.000000"]
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.REFUNDED
    assert WebhookEvent.objects.get(event_id=refund["id"]).status == "processed"
    assert deliver(event).json()["duplicate"] is True


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_one_event_at_once_credit_once(fake_stripe, platform):
    """The first delivery stores the event and waits for the order (held by another transaction); the second one's
    insert waits on the first one's uncommitted row (the unique index), then finds it done: one ledger row, one
    event row, the second answered as a duplicate."""
    member = make_member(platform, "dup")
    order = start_top_up(member, "25.00")
    event = session_event(COMPLETED, order)
    held, go_on, outcomes = threading.Event(), threading.Event(), {}

    def order_holder() -> None:
        try:
            with transaction.atomic():
                Order.objects.select_for_update().get(pk=order["id"])
                held.set()
                go_on.wait(30)
        finally:
            connections.close_all()

    def delivery(name: str) -> None:
        try:
            outcomes[f"{name}_pid"] = backend_tag()
            outcomes[name] = webhook_event_receive(provider="stripe", event=event)
        finally:
            connections.close_all()

    def start(name: str) -> threading.Thread:
        thread = threading.Thread(target=delivery, args=(name,))
        thread.start()
        while f"{name}_pid" not in outcomes:
            thread.join(0.01)
        wait_until_blocked(outcomes[f"{name}_pid"])  # seen waiting for a lock in pg_locks
        return thread

    holder = threading.Thread(target=order_holder)
    holder.start()
    assert held.wait(30)
    first = start("first")  # stored the event, waits for the order
    second = start("second")  # waits for the first one's event row
    go_on.set()
    for thread in (holder, first, second):
        thread.join(30)

    assert outcomes["first"].status == "processed" and not outcomes["first"].duplicate
    assert outcomes["second"].duplicate is True
    assert LedgerEntry.objects.filter(reference=f"order:{order['id']}").count() == 1
    assert WebhookEvent.objects.filter(event_id=event["id"]).count() == 1
