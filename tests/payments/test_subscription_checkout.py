"""Subscription checkout (Stripe Checkout in mode subscription), its completion, and the billing portal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from credits.models import LedgerEntry
from payments.models import Order, OrderStatus, OrderType
from subscriptions.models import Subscription
from tests.api_helpers import error_of, post_json
from tests.conftest import client_for, make_member
from tests.payments import stripe_subscriptions
from tests.payments.conftest import ORDERS_URL, deliver
from tests.payments.stripe_subscriptions import (
    PORTAL_URL,
    RETURN_URL,
    session_completed,
    subscribe,
)
from tests.subscriptions.conftest import make_plan, start

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def pro(platform):
    return make_plan(
        platform,
        "pro",
        price_monthly=1000,
        price_yearly=9900,
        credits_included=Decimal(100),
        stripe_price_monthly="price_pro_m",
        stripe_price_yearly="price_pro_y",
    )


def test_subscription_checkout_opens_a_stripe_session_for_the_plans_price(stripe_billing, member, pro):
    response = subscribe(member, str(pro.pk), "monthly")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["url"].startswith("https://checkout.stripe.test/c/pay/cs_test_")
    order = Order.objects.get(pk=body["order_id"])
    assert (
        order.type,
        order.status,
        order.amount_usd,
        order.credits,
        order.plan_id,
        order.billing_cycle,
    ) == (OrderType.SUBSCRIPTION, OrderStatus.PENDING, Decimal("10.00"), Decimal(100), pro.pk, "monthly")
    assert order.provider_checkout_id == body["url"].rsplit("/", 1)[1]
    form = stripe_billing.last["form"]
    assert form["mode"] == "subscription"
    assert form["line_items[0][price]"] == "price_pro_m" and form["line_items[0][quantity]"] == "1"
    assert form["client_reference_id"] == str(order.id) == form["metadata[order_id]"]
    assert form["subscription_data[metadata][order_id]"] == str(order.id)
    assert form["subscription_data[metadata][account_id]"] == str(member.account.id)
    assert form["subscription_data[metadata][plan_id]"] == str(pro.pk)
    assert "price_data" not in " ".join(form)
    assert stripe_billing.last["headers"]["Idempotency-Key"] == f"checkout-session:{order.id}"
    shown = client_for(member).get(f"{ORDERS_URL}{order.id}/").json()
    assert (shown["plan_id"], shown["billing_cycle"], shown["amount_usd"]) == (
        str(pro.pk),
        "monthly",
        "10.00",
    )


def test_yearly_checkout_uses_the_yearly_price_and_amount(stripe_billing, member, pro):
    response = subscribe(member, str(pro.pk), "yearly")

    assert response.status_code == 201, response.content
    assert stripe_billing.last["form"]["line_items[0][price]"] == "price_pro_y"
    assert Order.objects.get().amount_usd == Decimal("99.00")


def test_a_subscription_checkout_without_billing_cycle_is_monthly(stripe_billing, member, pro):
    response = subscribe(member, str(pro.pk), None)

    assert response.status_code == 201, response.content
    assert Order.objects.get().billing_cycle == "monthly"
    assert stripe_billing.last["form"]["line_items[0][price]"] == "price_pro_m"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"plan_id": None}, "plan_id"),
        ({"plan_id": "not-a-uuid"}, "plan_id"),
        ({"plan_id": "00000000-0000-0000-0000-000000000000"}, "plan_id"),
        ({"billing_cycle": ""}, "billing_cycle"),
        ({"billing_cycle": "weekly"}, "billing_cycle"),
        ({"success_url": "https://evil.test/x"}, "success_url"),
        ({"cancel_url": "javascript:alert(1)"}, "cancel_url"),
    ],
)
def test_bad_subscription_checkouts_are_400s_naming_the_field(stripe_billing, member, pro, fields, field):
    body = {"plan_id": str(pro.pk), "billing_cycle": "monthly"} | fields
    plan_id, cycle = body.pop("plan_id"), body.pop("billing_cycle")

    error = error_of(subscribe(member, plan_id, cycle, **body), 400)

    assert field in error["details"]
    assert Order.objects.count() == 0 and stripe_billing.requests == []


@pytest.mark.parametrize(
    ("plan_fields", "cycle", "field"),
    [
        ({"is_active": False}, "monthly", "plan_id"),
        ({"purchasable": False}, "monthly", "plan_id"),
        ({"stripe_price_yearly": ""}, "yearly", "billing_cycle"),
        ({"price_monthly": 0, "stripe_price_monthly": "price_free"}, "monthly", "billing_cycle"),
    ],
)
def test_plans_not_on_sale_through_stripe_are_refused(
    stripe_billing, member, platform, plan_fields, cycle, field
):
    values = {"stripe_price_monthly": "price_m", "stripe_price_yearly": "price_y"} | plan_fields
    plan = make_plan(platform, "basic", **values)

    error = error_of(subscribe(member, str(plan.pk), cycle), 400, "invalid")

    assert field in error["details"]
    assert Order.objects.count() == 0 and stripe_billing.requests == []


def test_another_platforms_plan_is_refused(stripe_billing, member, other_platform):
    plan = make_plan(other_platform, "pro", stripe_price_monthly="price_other")

    error = error_of(subscribe(member, str(plan.pk)), 400, "invalid")

    assert "plan_id" in error["details"] and Order.objects.count() == 0


def test_an_account_with_a_current_subscription_is_sent_to_the_portal(stripe_billing, member, pro):
    start(member.account, pro)

    error = error_of(subscribe(member, str(pro.pk)), 409, "subscription_exists")

    assert error["details"]["plan"] == "pro"
    assert Order.objects.count() == 0 and stripe_billing.requests == []


def test_a_stripe_failure_is_a_502_and_the_order_fails(stripe_billing, member, pro):
    stripe_billing.fail_status = 500

    error_of(subscribe(member, str(pro.pk)), 502, "payment_provider_error")

    order = Order.objects.get()
    assert order.status == OrderStatus.FAILED and order.failed_at is not None


def test_completed_session_pays_the_order_and_starts_the_subscription(stripe_billing, member, pro):
    order = Order.objects.get(pk=subscribe(member, str(pro.pk)).json()["order_id"])
    event = session_completed(
        order_id=str(order.id),
        session_id=order.provider_checkout_id,
        subscription_id="sub_test_a",
        customer_id="cus_test_a",
        amount_total=1000,
    )

    first, again = deliver(event), deliver(event)

    assert first.json() | {"event_id": None} == {
        "received": True,
        "event_id": None,
        "status": "processed",
        "duplicate": False,
    }
    assert again.json()["duplicate"] is True
    order.refresh_from_db()
    assert (
        order.status,
        order.provider_subscription_id,
        order.provider_customer_id,
        order.amount_paid_usd,
    ) == (OrderStatus.PAID, "sub_test_a", "cus_test_a", Decimal("10.00"))
    subscription = Subscription.objects.get()
    assert (
        subscription.account_id,
        subscription.plan_id,
        subscription.status,
        subscription.billing_cycle,
    ) == (member.account.id, pro.pk, "active", "monthly")
    assert (
        subscription.provider,
        subscription.provider_subscription_id,
        subscription.provider_customer_id,
    ) == ("stripe", "sub_test_a", "cus_test_a")
    assert subscription.synced_at is not None
    # Credits come with the paid invoice, not with the checkout.
    assert not LedgerEntry.objects.filter(
        account_id=member.account.id, reference__startswith="subscription:"
    ).exists()


def test_a_payment_mode_session_for_a_subscription_order_is_refused_and_flagged(stripe_billing, member, pro):
    order = Order.objects.get(pk=subscribe(member, str(pro.pk)).json()["order_id"])
    event = session_completed(
        order_id=str(order.id),
        session_id=order.provider_checkout_id,
        subscription_id="sub_test_b",
        mode="payment",
    )

    response = deliver(event)

    assert response.status_code == 200 and response.json()["status"] == "failed"
    order.refresh_from_db()
    assert order.needs_review and order.status == OrderStatus.PENDING
    assert Subscription.objects.count() == 0


# --- the billing portal ------------------------------------------------------------------------------------


def test_portal_needs_a_stripe_customer(stripe_billing, member):
    error_of(
        post_json(client_for(member), PORTAL_URL, {"return_url": RETURN_URL}), 409, "no_billing_customer"
    )
    assert stripe_billing.requests == []


def test_portal_opens_a_session_for_the_subscribers_customer(stripe_billing, member, pro):
    start(member.account, pro, provider_customer_id="cus_test_portal")

    response = post_json(client_for(member), PORTAL_URL, {"return_url": RETURN_URL})

    assert response.status_code == 200, response.content
    assert response.json()["url"].startswith("https://billing.stripe.test/p/session/bps_test_")
    assert stripe_billing.last["path"] == "/v1/billing_portal/sessions"
    assert stripe_billing.last["form"] == {"customer": "cus_test_portal", "return_url": RETURN_URL}


def test_portal_uses_a_stripe_orders_customer_when_there_is_no_subscription(stripe_billing, member, pro):
    order = Order.objects.get(pk=subscribe(member, str(pro.pk)).json()["order_id"])
    Order.objects.filter(pk=order.pk).update(provider_customer_id="cus_from_order")

    response = post_json(client_for(member), PORTAL_URL, {"return_url": RETURN_URL})

    assert response.status_code == 200, response.content
    assert stripe_billing.last["form"]["customer"] == "cus_from_order"


@pytest.mark.parametrize("body", [{}, {"return_url": "https://evil.test/"}, {"return_url": "nope"}])
def test_portal_bad_return_url_is_a_400(stripe_billing, member, pro, body):
    start(member.account, pro)

    error = error_of(post_json(client_for(member), PORTAL_URL, body), 400)

    assert "return_url" in error["details"] and stripe_billing.requests == []


def test_portal_stripe_failure_is_a_502(stripe_billing, member, pro):
    start(member.account, pro)
    stripe_billing.fail_status = 500

    error_of(
        post_json(client_for(member), PORTAL_URL, {"return_url": RETURN_URL}), 502, "payment_provider_error"
    )


def test_portal_is_for_members_only(stripe_billing, platform, outsider):
    response = post_json(
        client_for(outsider, platform_key=platform.platform_key), PORTAL_URL, {"return_url": RETURN_URL}
    )
    assert response.status_code in (401, 403, 404)


def test_each_member_gets_their_own_customer(stripe_billing, platform, member, pro):
    other = make_member(platform, "otto")
    start(member.account, pro, provider_customer_id="cus_mine")
    start(other.account, pro, provider_customer_id="cus_otto")

    post_json(client_for(other), PORTAL_URL, {"return_url": RETURN_URL})

    assert stripe_billing.last["form"]["customer"] == "cus_otto"
