"""POST /api/billing/checkout/ with channel "creem": a pending subscription order and a Creem checkout made
against a local fake of Creem's ``POST /v1/checkouts`` that checks what is sent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments.models import Order, OrderStatus
from tests.api_helpers import db_snapshot, error_of
from tests.conftest import client_for
from tests.payments.creem_support import (
    API_KEY,
    ORDERS_URL,
    PRODUCT_ID,
    SUCCESS_URL,
    checkout,
    creem_plan,
)
from tests.subscriptions.conftest import start

pytestmark = pytest.mark.django_db


def test_subscription_checkout_creates_a_pending_order_and_a_creem_checkout(fake_creem, member):
    plan = creem_plan(member.platform)

    response = checkout(member, plan_id=str(plan.pk))

    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get(pk=body["order_id"])
    assert body["url"] == order.checkout_url
    assert order.checkout_url.startswith("https://checkout.creem.test/checkout/ch_test_")
    assert (order.channel, order.type, order.status) == ("creem", "subscription", OrderStatus.PENDING)
    assert (order.amount_usd, order.credits, order.plan_id, order.billing_cycle) == (
        Decimal("20.00"), Decimal("500"), plan.pk, "monthly")
    assert order.provider_checkout_id.startswith("ch_test_") and order.ledger_entry_id is None

    assert len(fake_creem.requests) == 1
    sent, headers = fake_creem.last["json"], fake_creem.last["headers"]
    assert headers["X-Api-Key"] == API_KEY
    assert headers["Content-Type"] == "application/json"
    assert sent["product_id"] == PRODUCT_ID
    assert sent["request_id"] == str(order.id)
    assert sent["success_url"] == SUCCESS_URL
    assert sent["metadata"] == {"order_id": str(order.id), "order_type": "subscription",
                                "platform_id": str(member.platform.pk)}
    assert set(sent) <= {"product_id", "request_id", "success_url", "metadata", "customer"}  # no cancel URL

    shown = client_for(member).get(f"{ORDERS_URL}{order.id}/").json()
    assert (shown["channel"], shown["status"], shown["amount_usd"]) == ("creem", "pending", "20.00")


def test_plan_by_slug_and_yearly_cycle(fake_creem, member):
    creem_plan(member.platform, "team")
    response = checkout(member, plan_id="team", billing_cycle="yearly")
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    assert (order.amount_usd, order.billing_cycle) == (Decimal("200.00"), "yearly")


@pytest.mark.parametrize(
    ("plan_fields", "plan_id"),
    [
        ({}, None),  # no plan_id
        ({}, "00000000-0000-0000-0000-000000000000"),  # no such plan
        ({}, "nope"),
        ({"creem_product_id": ""}, "plan"),  # not sold through Creem
        ({"is_active": False}, "plan"),
        ({"purchasable": False}, "plan"),
        ({"price_monthly": 0}, "plan"),
    ],
)
def test_a_creem_checkout_needs_an_active_purchasable_plan_with_a_creem_product(
    fake_creem, member, other_platform, plan_fields, plan_id
):
    plan = creem_plan(member.platform, **plan_fields)
    before = db_snapshot()
    response = checkout(member, plan_id=str(plan.pk) if plan_id == "plan" else plan_id)
    error = error_of(response, 400)
    assert "plan_id" in error["details"]
    assert Order.objects.count() == 0 and fake_creem.requests == [] and db_snapshot() == before


def test_another_platforms_plan_is_refused(fake_creem, member, other_platform):
    plan = creem_plan(other_platform)
    error = error_of(checkout(member, plan_id=str(plan.pk)), 400)
    assert "plan_id" in error["details"] and Order.objects.count() == 0


def test_a_top_up_through_creem_is_refused(fake_creem, member):
    creem_plan(member.platform)
    error = error_of(checkout(member, type="top_up", amount="25.00"), 400, "checkout_type_not_available")
    assert "type" in error["details"]
    assert Order.objects.count() == 0 and fake_creem.requests == []


def test_redirects_must_stay_on_allowed_origins(fake_creem, member):
    plan = creem_plan(member.platform)
    error = error_of(checkout(member, plan_id=str(plan.pk), success_url="https://evil.test/x"), 400)
    assert "success_url" in error["details"] and Order.objects.count() == 0


def test_an_account_with_a_current_subscription_is_refused(fake_creem, member):
    plan = creem_plan(member.platform)
    start(member.account, plan)
    error_of(checkout(member, plan_id=str(plan.pk)), 409)
    assert Order.objects.count() == 0 and fake_creem.requests == []


def test_creem_failure_is_a_502_and_the_order_is_failed(fake_creem, member):
    plan = creem_plan(member.platform)
    fake_creem.fail_status = 500
    error = error_of(checkout(member, plan_id=str(plan.pk)), 502, "payment_provider_error")
    assert error["details"]["provider"] == "creem"
    order = Order.objects.get()
    assert order.status == OrderStatus.FAILED and order.failed_at is not None and order.checkout_url == ""


def test_unconfigured_creem_is_a_503_before_anything_is_written(fake_creem, member, settings):
    plan = creem_plan(member.platform)
    settings.CREEM_API_KEY = ""
    error_of(checkout(member, plan_id=str(plan.pk)), 503, "payment_provider_not_configured")
    assert Order.objects.count() == 0 and fake_creem.requests == []
