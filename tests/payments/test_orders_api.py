"""GET /api/billing/orders/ and /api/billing/orders/{id}/: the caller's own orders only."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from tests.api_helpers import assert_money, assert_utc, error_of, invalid_field
from tests.conftest import client_for
from tests.payments.conftest import ORDERS_URL, deliver, session_event, start_top_up

pytestmark = pytest.mark.django_db

ORDER_FIELDS = {
    "id", "type", "channel", "status", "currency", "amount_usd", "credits", "amount_paid_usd",
    "provider_checkout_id", "provider_payment_id", "provider_customer_id", "checkout_url", "transaction_id",
    "created_at", "updated_at", "paid_at", "failed_at", "canceled_at", "refunded_at",
    "plan_id", "billing_cycle", "provider_subscription_id", "amount_refunded_usd", "credits_reversed",
    "refund_shortfall_credits", "ai_plan_id", "quantity", "coupon_id", "discount_usd",
}


def test_an_order_as_the_api_shows_it(fake_stripe, member):
    order = start_top_up(member, "12.30")
    assert set(order) == ORDER_FIELDS
    assert (order["type"], order["channel"], order["status"], order["currency"]) == (
        "top_up", "stripe", "pending", "USD")
    assert order["amount_usd"] == "12.30" and order["credits"] == "12.30"
    assert_money(order["amount_usd"])
    assert order["amount_paid_usd"] is None and order["transaction_id"] is None
    assert order["provider_checkout_id"].startswith("cs_test_")
    assert order["checkout_url"].endswith(order["provider_checkout_id"])
    assert_utc(order["created_at"])
    assert order["paid_at"] is None


def test_list_is_newest_first_and_only_the_callers(fake_stripe, member, other_member, outsider):
    mine = [start_top_up(member, amount)["id"] for amount in ("10.00", "11.00", "12.00")]
    start_top_up(other_member, "13.00")
    body = client_for(member).get(ORDERS_URL).json()
    assert body["count"] == 3 and body["next"] is None and body["previous"] is None
    assert [o["id"] for o in body["results"]] == mine[::-1]
    assert client_for(outsider).get(ORDERS_URL).json()["count"] == 0


def test_filters_by_status_and_type(fake_stripe, member):
    paid = start_top_up(member, "10.00")
    pending = start_top_up(member, "20.00")
    deliver(session_event("checkout.session.completed", paid))
    client = client_for(member)
    assert [o["id"] for o in client.get(ORDERS_URL, {"status": "paid"}).json()["results"]] == [paid["id"]]
    assert [o["id"] for o in client.get(ORDERS_URL, {"status": "pending"}).json()["results"]] == [pending["id"]]
    assert client.get(ORDERS_URL, {"status": "failed"}).json()["count"] == 0
    assert client.get(ORDERS_URL, {"type": "top_up"}).json()["count"] == 2
    assert client.get(ORDERS_URL, {"type": "subscription"}).json()["count"] == 0
    invalid_field(client.get(ORDERS_URL, {"status": "lost"}), "status")
    invalid_field(client.get(ORDERS_URL, {"type": "gift"}), "type")


def test_page_and_cursor_pagination(fake_stripe, member):
    ids = [start_top_up(member, f"{5 + i}.00")["id"] for i in range(5)][::-1]
    client = client_for(member)
    first = client.get(ORDERS_URL, {"page_size": 2}).json()
    assert first["count"] == 5 and [o["id"] for o in first["results"]] == ids[:2]
    third = client.get(ORDERS_URL, {"page_size": 2, "page": 3}).json()
    assert [o["id"] for o in third["results"]] == ids[4:] and third["next"] is None
    error_of(client.get(ORDERS_URL, {"page_size": 2, "page": 4}), 404)
    invalid_field(client.get(ORDERS_URL, {"page_size": 101}), "page_size")

    walked, url = [], f"{ORDERS_URL}?pagination=cursor&page_size=2"
    while url:
        page = client.get(url).json()
        walked += [o["id"] for o in page["results"]]
        url = page["next"]
    assert walked == ids


def test_detail_of_someone_elses_order_is_404(fake_stripe, member, other_member, outsider):
    theirs = start_top_up(other_member, "10.00")
    error_of(client_for(member).get(f"{ORDERS_URL}{theirs['id']}/"), 404, "order_not_found")
    error_of(client_for(outsider).get(f"{ORDERS_URL}{theirs['id']}/"), 404, "order_not_found")
    error_of(client_for(member).get(f"{ORDERS_URL}{uuid.uuid4()}/"), 404, "order_not_found")
    error_of(client_for(member).get(f"{ORDERS_URL}not-a-uuid/"), 404, "order_not_found")
    assert client_for(other_member).get(f"{ORDERS_URL}{theirs['id']}/").json()["id"] == theirs["id"]


def test_needs_credentials_and_membership(fake_stripe, member, outsider):
    order = start_top_up(member)
    error_of(APIClient().get(ORDERS_URL), 401)
    error_of(APIClient().get(f"{ORDERS_URL}{order['id']}/"), 401)
    error_of(client_for(outsider, platform_key="acme").get(ORDERS_URL), 403, "not_a_member")
