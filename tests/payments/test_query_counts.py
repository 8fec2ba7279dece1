"""Query-count baselines of the payments operations (see ``tests/test_query_counts.py``): checkout and the
billing portal against the local Stripe fake, the caller's orders and saved card, and the providers' webhooks
(signed as the providers sign them). Update a number in ``QUERIES`` (one line) when a change moves it on
purpose; the failure lists every statement the request ran. Counted: the statements Django runs; the prepared
statements of the hot paths (``billing_service.db.server_bound_cursor``: the webhook event's insert, the order's
lock, the parked-refund look-up, the ledger's posting) run on the same connection outside Django's count."""

from __future__ import annotations

import pytest

from tests.api_helpers import post_json
from tests.conftest import client_for
from tests.payments import creem_support
from tests.payments import stripe_subscriptions as stripe_support
from tests.payments import test_seats_support as seats_support
from tests.payments.conftest import deliver, session_event
from tests.subscriptions.conftest import make_plan, start

stripe_billing = stripe_support.stripe_billing  # the fake Stripe of subscriptions (and portal sessions)
fake_creem = creem_support.fake_creem
stripe_seats = seats_support.stripe_seats  # the fake Stripe of seats (sessions, subscriptions)

pytestmark = pytest.mark.django_db

QUERIES = {
    "billing_checkout_create": 9,
    "billing_portal_create": 3,
    "billing_orders_list": 1,
    "billing_orders_retrieve": 1,
    "billing_payment_method_create": 5,
    "billing_payment_method_retrieve": 2,
    "billing_payment_method_destroy": 6,
    "billing_webhooks_stripe_create": 6,  # + does an endpoint listen to order.paid?
    "billing_webhooks_creem_create": 18,  # + order.paid, subscription.updated listened to?
    "billing_ai_subscriptions_list": 1,
    "billing_ai_subscriptions_retrieve": 1,
    "billing_ai_subscriptions_partial_update": 1,
    "billing_entitlements_refresh_create": 10,
    "billing_admin_coupons_list": 2,  # the page, its plans (prefetched)
    "billing_admin_coupons_create": 10,
    "billing_admin_coupons_retrieve": 2,
    "billing_admin_coupons_update": 9,
    "billing_admin_coupons_partial_update": 8,
    "billing_coupons_redeem_create": 13,  # the attempt counted (its own transaction), the redemption (the ledger row: a prepared statement)
    "billing_checkout_create_with_coupon": 19,  # + the checkouts still open with the coupon
}

SEVERAL = [2, 12]
TOP_UP = {"channel": "stripe", "type": "top_up", "amount": "25.00", "success_url": stripe_support.SUCCESS_URL,
          "cancel_url": stripe_support.CANCEL_URL}


def _counted(django_assert_num_queries, operation: str, call):  # noqa: ANN001, ANN202
    with django_assert_num_queries(QUERIES[operation]):
        return call()


def _top_up(member) -> dict:  # noqa: ANN001
    response = post_json(client_for(member), "/api/billing/checkout/", TOP_UP)
    assert response.status_code == 201, response.content
    return client_for(member).get(f"/api/billing/orders/{response.json()['order_id']}/").json()


def test_checkout_create(django_assert_num_queries, fake_stripe, member):
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_checkout_create",
                        lambda: post_json(client, "/api/billing/checkout/", TOP_UP))
    assert response.status_code == 201, response.content


def test_portal_create(django_assert_num_queries, stripe_billing, platform, member):
    start(member.account, make_plan(platform, "pro"), provider_customer_id="cus_test_portal")
    client = client_for(member)
    body = {"return_url": stripe_support.RETURN_URL}
    response = _counted(django_assert_num_queries, "billing_portal_create",
                        lambda: post_json(client, "/api/billing/portal/", body))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("rows", SEVERAL)
def test_orders_list(django_assert_num_queries, fake_stripe, member, rows):
    for _ in range(rows):
        _top_up(member)
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_orders_list",
                        lambda: client.get("/api/billing/orders/", {"page_size": 100}))
    assert response.status_code == 200 and len(response.json()["results"]) == rows


def test_orders_retrieve(django_assert_num_queries, fake_stripe, member):
    order = _top_up(member)
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_orders_retrieve",
                        lambda: client.get(f"/api/billing/orders/{order['id']}/"))
    assert response.status_code == 200, response.content


def test_payment_method_create(django_assert_num_queries, fake_stripe, member):
    client = client_for(member)
    body = {"success_url": stripe_support.SUCCESS_URL, "cancel_url": stripe_support.CANCEL_URL}
    response = _counted(django_assert_num_queries, "billing_payment_method_create",
                        lambda: post_json(client, "/api/billing/payment-method/", body))
    assert response.status_code == 201, response.content


def test_payment_method_retrieve(django_assert_num_queries, member):
    client = client_for(member)  # no card saved: the look-up is the same
    response = _counted(django_assert_num_queries, "billing_payment_method_retrieve",
                        lambda: client.get("/api/billing/payment-method/"))
    assert response.status_code == 404, response.content


def test_payment_method_destroy(django_assert_num_queries, member):
    client = client_for(member)  # no card saved: the look-up is the same
    response = _counted(django_assert_num_queries, "billing_payment_method_destroy",
                        lambda: client.delete("/api/billing/payment-method/"))
    assert response.status_code == 404, response.content


def test_webhooks_stripe_create(django_assert_num_queries, fake_stripe, member):
    event = session_event("checkout.session.completed", _top_up(member))
    response = _counted(django_assert_num_queries, "billing_webhooks_stripe_create", lambda: deliver(event))
    assert response.status_code == 200 and response.json()["status"] == "processed", response.content


def test_webhooks_creem_create(django_assert_num_queries, fake_creem, platform, member):
    order = creem_support.start_subscription_checkout(member, creem_support.creem_plan(platform))
    event = creem_support.checkout_completed(order)
    response = _counted(django_assert_num_queries, "billing_webhooks_creem_create",
                        lambda: creem_support.deliver(event))
    assert response.status_code == 200 and response.json()["status"] == "processed", response.content


# --- seats ------------------------------------------------------------------------------------------------------


def _seats(platform, subscription_id: str, quantity: int = 3):  # noqa: ANN001, ANN202
    from entitlements.models import AIPlan, SeatSubscription

    plan = AIPlan.objects.filter(slug="advanced").first() or seats_support.seat_plan()
    event = seats_support.subscription_event(
        "created", subscription_id, created=seats_support.T0 + 10, quantity=quantity, price_id=plan.stripe_price_id,
        metadata=seats_support.seats_metadata(platform, plan))
    assert deliver(event).json()["status"] == "processed"
    return plan, SeatSubscription.objects.get(provider_subscription_id=subscription_id)


@pytest.mark.parametrize("rows", SEVERAL)
def test_ai_subscriptions_list(django_assert_num_queries, stripe_seats, platform, admin, rows):
    for i in range(rows):
        _seats(platform, f"sub_count_{i}")
    client = client_for(admin)
    response = _counted(django_assert_num_queries, "billing_ai_subscriptions_list",
                        lambda: client.get(seats_support.AI_SUBSCRIPTIONS_URL, {"page_size": 100}))
    assert response.status_code == 200 and len(response.json()["results"]) == rows


def test_ai_subscriptions_retrieve(django_assert_num_queries, stripe_seats, platform, admin):
    _, row = _seats(platform, "sub_count")
    client = client_for(admin)
    response = _counted(django_assert_num_queries, "billing_ai_subscriptions_retrieve",
                        lambda: client.get(f"{seats_support.AI_SUBSCRIPTIONS_URL}{row.pk}/"))
    assert response.status_code == 200, response.content


def test_ai_subscriptions_partial_update(django_assert_num_queries, stripe_seats, platform, admin):
    plan, row = _seats(platform, "sub_count")
    stripe_seats.subscription("sub_count", quantity=3, price_id=plan.stripe_price_id,
                              metadata=seats_support.seats_metadata(platform, plan))
    client = client_for(admin)
    response = _counted(django_assert_num_queries, "billing_ai_subscriptions_partial_update",
                        lambda: client.patch(f"{seats_support.AI_SUBSCRIPTIONS_URL}{row.pk}/", {"quantity": 4},
                                             format="json"))
    assert response.status_code == 202, response.content


def test_entitlements_refresh_create(django_assert_num_queries, stripe_seats, platform, admin):
    plan, _ = _seats(platform, "sub_count")
    stripe_seats.subscription("sub_count", quantity=5, price_id=plan.stripe_price_id,
                              metadata=seats_support.seats_metadata(platform, plan))
    client = client_for(admin)
    response = _counted(django_assert_num_queries, "billing_entitlements_refresh_create",
                        lambda: post_json(client, seats_support.REFRESH_URL, {}))
    assert response.status_code == 200 and response.json()["seats_updated"] == 1, response.content


# --- coupons -------------------------------------------------------------------------------------------------

COUPON = {"code": "SAVE5", "kind": "amount_off", "value": "5.00"}


def _coupon(admin, code: str = "SAVE5", **fields) -> dict:  # noqa: ANN001, ANN003
    response = post_json(client_for(admin), "/api/billing/admin/coupons/", COUPON | {"code": code} | fields)
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.parametrize("rows", SEVERAL)
def test_admin_coupons_list(django_assert_num_queries, platform, admin, rows):
    plan = make_plan(platform, "pro")
    for i in range(rows):
        _coupon(admin, f"C{i}", plan_ids=[str(plan.pk)])
    client = client_for(admin)
    response = _counted(django_assert_num_queries, "billing_admin_coupons_list",
                        lambda: client.get("/api/billing/admin/coupons/"))
    assert response.status_code == 200 and response.json()["count"] == rows


def test_admin_coupons_create(django_assert_num_queries, platform, admin):
    plan = make_plan(platform, "pro")
    client = client_for(admin)
    body = COUPON | {"plan_ids": [str(plan.pk)]}
    response = _counted(django_assert_num_queries, "billing_admin_coupons_create",
                        lambda: post_json(client, "/api/billing/admin/coupons/", body))
    assert response.status_code == 201, response.content


def test_admin_coupons_retrieve(django_assert_num_queries, admin):
    coupon = _coupon(admin)
    client = client_for(admin)
    response = _counted(django_assert_num_queries, "billing_admin_coupons_retrieve",
                        lambda: client.get(f"/api/billing/admin/coupons/{coupon['id']}/"))
    assert response.status_code == 200


def test_admin_coupons_update(django_assert_num_queries, admin):
    coupon = _coupon(admin)
    client = client_for(admin)
    response = _counted(django_assert_num_queries, "billing_admin_coupons_update",
                        lambda: client.put(f"/api/billing/admin/coupons/{coupon['id']}/", coupon | {"value": "6"},
                                           format="json"))
    assert response.status_code == 200, response.content


def test_admin_coupons_partial_update(django_assert_num_queries, admin):
    coupon = _coupon(admin)
    client = client_for(admin)
    response = _counted(django_assert_num_queries, "billing_admin_coupons_partial_update",
                        lambda: client.patch(f"/api/billing/admin/coupons/{coupon['id']}/", {"active": False},
                                             format="json"))
    assert response.status_code == 200, response.content


def test_coupons_redeem_create(django_assert_num_queries, admin, member):
    _coupon(admin, "FREE10", kind="credits", value="10")
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_coupons_redeem_create",
                        lambda: post_json(client, "/api/billing/coupons/redeem/", {"code": "free10"}))
    assert response.status_code == 201, response.content


def test_checkout_create_with_coupon(django_assert_num_queries, fake_stripe, httpserver, admin, member):
    import json

    from werkzeug import Response

    httpserver.expect_request("/v1/coupons", method="POST").respond_with_handler(
        lambda request: Response(json.dumps({"id": request.form["id"], "object": "coupon"}),
                                 content_type="application/json"))
    _coupon(admin, max_per_account=2)
    client = client_for(member)
    post_json(client, "/api/billing/checkout/", TOP_UP | {"coupon": "SAVE5"})  # the Stripe coupon is made once
    response = _counted(django_assert_num_queries, "billing_checkout_create_with_coupon",
                        lambda: post_json(client, "/api/billing/checkout/", TOP_UP | {"coupon": "SAVE5"}))
    assert response.status_code == 201, response.content
