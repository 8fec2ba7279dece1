"""The seats' refresh from Stripe against localstripe, with no webhook registered: whatever localstripe's
subscriptions say reaches the service only through the refresh (``POST /api/billing/entitlements/refresh/`` and
the periodic task ``payments.tasks.seat_subscriptions_refresh``). Subscriptions are made and changed in localstripe
with the real ``stripe`` library (its update is called without ``proration_behavior``, which localstripe does
not know)."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections

from entitlements.models import SeatSubscription
from payments import tasks
from payments.models import Order
from tests.api_helpers import post_json
from tests.conftest import client_for, make_member, make_platform
from tests.payments.conftest import APP_ORIGIN, WEBHOOK_SECRET
from tests.payments.local_servers import SECRET_KEY
from tests.payments.localstripe_billing import LocalStripeBilling, localstripe_billing_server  # noqa: F401
from tests.payments.test_seats_support import REFRESH_URL, seat_plan, seats_metadata

pytestmark = pytest.mark.django_db


@pytest.fixture
def billing(settings, localstripe_billing_server) -> LocalStripeBilling:  # noqa: F811
    """The service pointed at this module's localstripe, which posts no event anywhere."""
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = localstripe_billing_server.local.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    settings.CHECKOUT_ALLOWED_ORIGINS = [APP_ORIGIN]
    return localstripe_billing_server


def subscribe(billing: LocalStripeBilling, customer: str, price: str, quantity: int,
              metadata: dict[str, str]) -> dict[str, Any]:
    return billing.client().v1.subscriptions.create(params={
        "customer": customer, "metadata": metadata, "items": [{"plan": price, "quantity": quantity}],
    }).to_dict()


def set_quantity(billing: LocalStripeBilling, subscription: dict[str, Any], quantity: int) -> None:
    current = billing.retrieve("subscriptions", subscription["id"])
    billing.client().v1.subscriptions.update(subscription["id"], params={
        "items": [{"id": current["items"]["data"][0]["id"], "quantity": quantity}]})


def seats_order(platform, admin, plan, customer: str) -> Order:  # noqa: ANN001
    """A seats order whose checkout named the platform's Stripe customer (its webhooks never came)."""
    return Order.objects.create(
        platform=platform, account=admin.account, user=admin.user, type="seats", channel="stripe",
        amount_usd=Decimal("75.00"), credits=0, ai_plan=plan, quantity=3, billing_cycle="monthly",
        success_url=f"{APP_ORIGIN}/billing", cancel_url=f"{APP_ORIGIN}/billing", provider_customer_id=customer,
    )


def refresh(admin) -> dict:  # noqa: ANN001
    response = post_json(client_for(admin), REFRESH_URL, {})
    assert response.status_code == 200, response.content
    return response.json()


def recorded(subscription_id: str) -> tuple:
    row = SeatSubscription.objects.get(provider_subscription_id=subscription_id)
    return row.quantity, row.status


def test_the_refresh_records_subscriptions_never_heard_of_and_follows_their_quantity(billing, platform,
                                                                                    other_platform):
    admin = make_member(platform, "ada", "admin")
    price = billing.price(amount=2500)
    plan = seat_plan(price_id=price)
    customer, _ = billing.customer_with_card()
    seats_order(platform, admin, plan, customer)
    seats = subscribe(billing, customer, price, 3, seats_metadata(platform, plan))
    # The same customer's other subscriptions: a credit plan's (no kind), and another platform's seats.
    subscribe(billing, customer, billing.price(amount=1000), 1, {"account_id": str(admin.account.id)})
    subscribe(billing, customer, price, 9, seats_metadata(other_platform, plan))

    first = refresh(admin)

    assert (first["refreshed"], first["plans_updated"], first["seats_updated"]) == (True, 1, 1)
    row = SeatSubscription.objects.get()
    assert (row.platform_id, row.ai_plan_id, row.provider_subscription_id, row.quantity, row.status,
            row.provider_customer_id) == (platform.pk, plan.pk, seats["id"], 3, "active", customer)
    assert row.next_billing_at.timestamp() == seats["current_period_end"] and row.synced_at is not None

    set_quantity(billing, seats, 7)
    second = refresh(admin)
    assert (second["plans_updated"], second["seats_updated"]) == (1, 1)
    assert recorded(seats["id"]) == (7, "active")

    unchanged = refresh(admin)
    assert (unchanged["plans_updated"], unchanged["seats_updated"]) == (0, 0)

    billing.client().v1.subscriptions.cancel(seats["id"])  # listed with status=all: its end is seen too
    ended = refresh(admin)
    assert ended["seats_updated"] == 1 and recorded(seats["id"]) == (7, "canceled")
    assert SeatSubscription.objects.count() == 1


def test_the_periodic_task_refreshes_every_platform_that_bought_seats(billing, platform):
    price = billing.price(amount=2500)
    plan = seat_plan(price_id=price)
    other = make_platform("initech")
    for tenant, quantity in ((platform, 2), (other, 4)):
        admin = make_member(tenant, f"admin-{tenant.platform_key}", "admin")
        customer, _ = billing.customer_with_card()
        seats_order(tenant, admin, plan, customer)
        subscribe(billing, customer, price, quantity, seats_metadata(tenant, plan))

    assert tasks.seat_subscriptions_refresh() == 2
    assert sorted(SeatSubscription.objects.values_list("platform_id", "quantity")) == sorted(
        [(platform.pk, 2), (other.pk, 4)])
    assert tasks.seat_subscriptions_refresh() == 0


def test_the_task_does_nothing_without_stripe(settings, platform):
    settings.STRIPE_SECRET_KEY = ""
    assert tasks.seat_subscriptions_refresh() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_record_each_subscription_once(billing):
    """Four refreshes of one platform at once (the periodic task and admins): one row per subscription, each
    with Stripe's quantity, and no refresh fails."""
    platform = make_platform("acme")
    admin = make_member(platform, "ada", "admin")
    price = billing.price(amount=2500)
    plan = seat_plan(price_id=price)
    customer, _ = billing.customer_with_card()
    seats_order(platform, admin, plan, customer)
    subscriptions = [subscribe(billing, customer, price, quantity, seats_metadata(platform, plan))
                     for quantity in (2, 5)]
    barrier, answers = threading.Barrier(4), []

    def run() -> None:
        try:
            barrier.wait(30)
            answers.append(post_json(client_for(admin), REFRESH_URL, {}).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert answers == [200] * 4
    assert sorted(SeatSubscription.objects.values_list("provider_subscription_id", "quantity")) == sorted(
        (s["id"], q) for s, q in zip(subscriptions, (2, 5), strict=True))
