"""Seats bought through Stripe end to end against localstripe: the real ``stripe`` library makes the customer and
the subscription with its quantity, localstripe posts its own signed events to our endpoint over HTTP, and the
tests check what the service recorded. What localstripe lacks, and how it is made up for, is listed in
tests/payments/localstripe_billing.py; for seats besides:

- Checkout: ``complete_seats`` subscribes the way Checkout does, with the session's quantity (the shared helper
  ``complete_subscription`` subscribes one unit).
- Quantity changes: localstripe's subscription update does not take ``proration_behavior`` (it predates it), and
  it sends no ``customer.subscription.updated``. ``proration_shim`` answers the update path in the idempotent
  front: it records what the service sent and passes the rest to localstripe; the test then posts the
  ``customer.subscription.updated`` Stripe would send, built from the subscription as localstripe shows it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from entitlements import selectors as seat_selectors
from entitlements.models import SeatAssignment, SeatSubscription
from entitlements.services import seat_assign
from payments.models import Order, OrderStatus
from tests.conftest import client_for, make_member
from tests.payments.local_servers import SECRET_KEY
from tests.payments.localstripe_billing import (  # noqa: F401 - fixtures
    LocalStripeBilling,
    event_of,
    localstripe_billing,
    localstripe_billing_server,
    statuses,
)
from tests.payments.test_seats_support import AI_SUBSCRIPTIONS_URL, buy_seats, seat_plan

pytestmark = pytest.mark.django_db(transaction=True)

PROCESSED, IGNORED = "processed", "ignored"
SEATS_STARTED = {  # what localstripe posts when a seats subscription starts, its first invoice paid by card
    "customer.subscription.created": PROCESSED,
    "invoice.created": IGNORED,
    "invoice.payment_succeeded": IGNORED,  # a seats invoice: seats are no credits
    "payment_intent.succeeded": IGNORED,
}


def _prefixed(form: dict[str, str], prefix: str) -> dict[str, str]:
    start = f"{prefix}["
    depth = prefix.count("[") + 1
    return {k[len(start):-1]: v for k, v in form.items() if k.startswith(start) and k.count("[") == depth}


def complete_seats(billing: LocalStripeBilling, session_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The customer pays a seats session: a customer with a card and a subscription of the session's quantity of
    its price, carrying ``subscription_data.metadata``. Returns ``checkout.session.completed`` and the
    subscription."""
    with billing.checkout.lock:
        found = billing.checkout.sessions[session_id]
    form, session = found["form"], dict(found["session"])
    customer = form.get("customer") or billing.customer_with_card()[0]
    metadata = _prefixed(form, "subscription_data[metadata]")
    subscription = billing.client().v1.subscriptions.create(params={
        "customer": customer, "metadata": metadata,
        "items": [{"plan": form["line_items[0][price]"], "quantity": int(form["line_items[0][quantity]"]),
                   "metadata": metadata}],
    }).to_dict()
    invoice = billing.retrieve("invoices", subscription["latest_invoice"])
    session |= {"status": "complete", "payment_status": "paid", "customer": customer,
                "subscription": subscription["id"], "amount_total": invoice["amount_paid"], "currency": "usd"}
    return event_of("checkout.session.completed", session), subscription


@contextmanager
def proration_shim(billing: LocalStripeBilling, subscription_id: str) -> Iterator[list[dict[str, str]]]:
    """``POST /v1/subscriptions/<id>`` answered through the front: what the service sent is recorded, and the
    request passed to localstripe without ``proration_behavior`` (which it does not know)."""
    sent: list[dict[str, str]] = []
    path = f"/v1/subscriptions/{subscription_id}"

    def update(body: bytes, headers: Any) -> tuple[int, bytes]:
        form = dict(parse_qsl(body.decode()))
        sent.append(form)
        passed = urlencode({k: v for k, v in form.items() if k != "proration_behavior"}).encode()
        request = urllib.request.Request(billing.local.backend_url + path, data=passed, method="POST", headers={
            "Authorization": f"Bearer {SECRET_KEY}", "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    billing.local.routes[("POST", path)] = update
    try:
        yield sent
    finally:
        del billing.local.routes[("POST", path)]


def test_seats_bought_through_checkout_are_recorded_with_their_quantity_and_changed_through_stripe(
    platform, localstripe_billing  # noqa: F811
):
    billing = localstripe_billing
    admin = make_member(platform, "ada", "admin")
    price = billing.price(amount=2500)
    plan = seat_plan(price_id=price)

    response = buy_seats(admin, str(plan.pk), 3)
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    form = billing.checkout.sessions[order.provider_checkout_id]["form"]
    assert (form["line_items[0][price]"], form["line_items[0][quantity]"], form["metadata[kind]"],
            form["subscription_data[metadata][kind]"]) == (price, "3", "seats", "seats")

    mark = billing.mark()
    completed, sub = complete_seats(billing, order.provider_checkout_id)
    answer = billing.post(completed)
    settled = billing.settle(mark)

    assert answer.status_code == 200 and answer.json()["status"] == PROCESSED, answer.content
    assert statuses(settled) == SEATS_STARTED
    order.refresh_from_db()
    assert (order.status, order.provider_subscription_id, order.provider_customer_id, order.amount_paid_usd) == (
        OrderStatus.PAID, sub["id"], sub["customer"], 75)
    seats = SeatSubscription.objects.get()
    assert (seats.platform_id, seats.ai_plan_id, seats.provider_subscription_id, seats.quantity, seats.status,
            seats.provider_customer_id) == (platform.pk, plan.pk, sub["id"], 3, "active", sub["customer"])
    assert seats.next_billing_at is not None and seats.next_billing_at.timestamp() == sub["current_period_end"]
    assert seat_selectors.seats_of(platform_id=platform.pk, ai_plan_id=plan.pk).total == 3

    # Five seats: asked of Stripe (prorated), nothing recorded until Stripe's event says so.
    with proration_shim(billing, sub["id"]) as sent:
        changed = client_for(admin).patch(f"{AI_SUBSCRIPTIONS_URL}{seats.pk}/", {"quantity": 5}, format="json")
    assert changed.status_code == 202, changed.content
    assert (changed.json()["requested_quantity"], changed.json()["subscription"]["quantity"]) == (5, 3)
    assert len(sent) == 1 and sent[0]["proration_behavior"] == "create_prorations"
    assert sent[0]["items[0][quantity]"] == "5" and sent[0]["items[0][id]"] == sub["items"]["data"][0]["id"]
    at_stripe = billing.retrieve("subscriptions", sub["id"])
    assert (at_stripe["quantity"], at_stripe["items"]["data"][0]["quantity"]) == (5, 5)
    assert SeatSubscription.objects.get().quantity == 3

    updated = billing.post(event_of("customer.subscription.updated", at_stripe))
    assert updated.status_code == 200 and updated.json()["status"] == PROCESSED, updated.content
    assert SeatSubscription.objects.get().quantity == 5
    assert client_for(admin).get(AI_SUBSCRIPTIONS_URL).json()["results"][0]["quantity"] == 5


def test_a_subscription_canceled_at_stripe_frees_the_plans_seats(platform, localstripe_billing):  # noqa: F811
    billing = localstripe_billing
    admin = make_member(platform, "ada", "admin")
    plan = seat_plan(price_id=billing.price(amount=2500))
    order = Order.objects.get(pk=buy_seats(admin, str(plan.pk), 2).json()["order_id"])
    mark = billing.mark()
    completed, sub = complete_seats(billing, order.provider_checkout_id)
    billing.post(completed)
    billing.settle(mark)
    for name in ("ann", "bob"):
        make_member(platform, name)
        seat_assign(platform=platform, ai_plan=plan, username=name, actor=admin.user)

    mark = billing.mark()
    billing.client().v1.subscriptions.cancel(sub["id"])
    deleted = billing.settle(mark)

    assert statuses(deleted) == {"customer.subscription.deleted": PROCESSED}
    seats = SeatSubscription.objects.get()
    assert seats.status == "canceled" and seats.ends_at is not None and seats.next_billing_at is None
    assert not SeatAssignment.objects.exists()
    # Its redelivery: nothing changes.
    before = list(SeatSubscription.objects.values())
    again = billing.redeliver(next(iter(deleted)))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert list(SeatSubscription.objects.values()) == before
    assert json.loads(again.content)["status"] == PROCESSED
