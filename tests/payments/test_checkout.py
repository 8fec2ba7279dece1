"""POST /api/billing/checkout/: a pending order and a Stripe Checkout Session made by the real library against
a local fake that checks the request."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import Role
from payments.models import Order, OrderStatus, PlatformPaymentSettings
from tests.api_helpers import db_snapshot, error_of, invalid_field, post_json
from tests.conftest import client_for, make_member
from tests.payments.conftest import (
    APP_ORIGIN,
    CANCEL_URL,
    CHECKOUT_URL,
    SECRET_KEY,
    SUCCESS_URL,
    checkout,
)

pytestmark = pytest.mark.django_db


def test_top_up_checkout_creates_a_pending_order_and_a_session(fake_stripe, member):
    response = checkout(member, "25.50")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"order_id", "url"}
    order = Order.objects.get(pk=body["order_id"])
    assert body["url"] == order.checkout_url == f"https://checkout.stripe.test/c/pay/{order.provider_checkout_id}"
    assert order.status == OrderStatus.PENDING
    assert (order.type, order.channel, order.currency) == ("top_up", "stripe", "USD")
    assert order.amount_usd == Decimal("25.50") and order.credits == Decimal("25.50")
    assert order.account_id == member.account.id and order.user_id == member.user.id
    assert order.platform_id == member.platform.id
    assert order.provider_checkout_id.startswith("cs_test_")
    assert order.ledger_entry_id is None and order.paid_at is None

    assert len(fake_stripe.requests) == 1
    sent, headers = fake_stripe.last["form"], fake_stripe.last["headers"]
    order_id = str(order.id)
    assert sent["mode"] == "payment"
    assert sent["client_reference_id"] == order_id
    assert sent["metadata[order_id]"] == order_id
    assert sent["payment_intent_data[metadata][order_id]"] == order_id
    assert sent["success_url"] == SUCCESS_URL
    assert sent["cancel_url"] == CANCEL_URL
    assert sent["line_items[0][quantity]"] == "1"
    assert sent["line_items[0][price_data][unit_amount]"] == "2550"
    assert sent["line_items[0][price_data][currency]"] == "usd"
    assert sent["line_items[0][price_data][product_data][name]"] == "25.50 credits"
    assert headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert headers["Idempotency-Key"] == f"checkout-session:{order_id}"


def test_a_json_number_amount_is_exact(fake_stripe, member):
    response = post_json(client_for(member), CHECKOUT_URL, '{"channel": "stripe", "type": "top_up", '
                         f'"amount": 19.99, "success_url": "{SUCCESS_URL}", "cancel_url": "{CANCEL_URL}"}}')
    assert response.status_code == 201, response.content
    assert Order.objects.get().amount_usd == Decimal("19.99")
    assert fake_stripe.last["form"]["line_items[0][price_data][unit_amount]"] == "1999"


@pytest.mark.parametrize("amount", ["5.00", "5", "1000.00", "999.99"])
def test_amounts_at_the_default_limits_are_accepted(fake_stripe, member, amount):
    assert checkout(member, amount).status_code == 201


def test_platform_settings_set_the_limits_and_origins(fake_stripe, member, settings):
    settings.CHECKOUT_ALLOWED_ORIGINS = []
    PlatformPaymentSettings.objects.create(
        platform=member.platform, top_up_min_usd=Decimal("1.00"), top_up_max_usd=Decimal("20.00"),
        allowed_redirect_origins=["https://shop.acme.test:8443"],
    )
    urls = {"success_url": "https://shop.acme.test:8443/ok", "cancel_url": "HTTPS://Shop.Acme.Test:8443/no"}
    assert checkout(member, "1.00", **urls).status_code == 201
    invalid_field(checkout(member, "20.01", **urls), "amount")
    invalid_field(checkout(member, "0.99", **urls), "amount")
    invalid_field(checkout(member, "5.00"), "success_url")  # the deployment list is empty now
    invalid_field(checkout(member, "5.00", **urls | {"cancel_url": "https://shop.acme.test/no"}), "cancel_url")


BAD_INPUT = [
    ("amount", {"amount": "4.99"}),
    ("amount", {"amount": "1000.01"}),
    ("amount", {"amount": "10.001"}),
    ("amount", {"amount": "NaN"}),
    ("amount", {"amount": "Infinity"}),
    ("amount", {"amount": "-10"}),
    ("amount", {"amount": "0"}),
    ("amount", {"amount": "ten"}),
    ("amount", {"amount": True}),
    ("amount", {"amount": None}),  # missing
    ("amount", {"amount": "1e4"}),  # above the maximum, in exponent form
    ("success_url", {"success_url": "https://evil.test/billing"}),
    ("success_url", {"success_url": "javascript:alert(1)"}),
    ("success_url", {"success_url": "//evil.test/billing"}),
    ("success_url", {"success_url": "/billing"}),
    ("success_url", {"success_url": "http://app.acme.test/billing"}),  # other scheme, other origin
    ("success_url", {"success_url": "https://app.acme.test.evil.test/"}),
    ("success_url", {"success_url": "https://app.acme.test@evil.test/"}),
    ("success_url", {"success_url": "https://app.acme.test:444/"}),
    ("success_url", {"success_url": "https://evil.test\\@app.acme.test/"}),
    ("success_url", {"success_url": None}),
    ("cancel_url", {"cancel_url": "https://evil.test/"}),
    ("cancel_url", {"cancel_url": "data:text/html,hi"}),
    ("cancel_url", {"cancel_url": "ftp://app.acme.test/"}),
    ("channel", {"channel": "paypal"}),
    ("channel", {"channel": None}),
    ("type", {"type": "donation"}),
    ("type", {"type": None}),
]


@pytest.mark.parametrize(("field", "change"), BAD_INPUT, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_INPUT)])
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(fake_stripe, member, field, change):
    before = db_snapshot()
    response = checkout(member, **({"amount": "25.00"} | change))
    invalid_field(response, field)
    assert Order.objects.count() == 0
    assert db_snapshot() == before
    assert fake_stripe.requests == []


def test_malformed_json_and_nan_literal_are_400(fake_stripe, member):
    for raw in ['{"channel": "stripe", "type": "top_up", "amount": NaN}', "{nope"]:
        error_of(post_json(client_for(member), CHECKOUT_URL, raw), 400, "malformed_request")
    assert Order.objects.count() == 0


def test_a_creem_top_up_is_refused(fake_stripe, member):
    # Creem sells fixed-price products: its checkouts are subscriptions only (tests/payments/test_creem_*).
    error = error_of(checkout(member, channel="creem"), 400, "checkout_type_not_available")
    assert "type" in error["details"]
    assert Order.objects.count() == 0 and fake_stripe.requests == []


def test_a_subscription_checkout_of_an_unknown_plan_is_refused(fake_stripe, member):
    # Subscription checkouts: tests/payments/test_subscription_checkout.py.
    error = error_of(checkout(member, type="subscription", plan_id="pro", billing_cycle="monthly"), 400, "invalid")
    assert "plan_id" in error["details"]
    assert Order.objects.count() == 0 and fake_stripe.requests == []


def test_needs_credentials(fake_stripe, db):
    response = post_json(APIClient(), CHECKOUT_URL, {"channel": "stripe", "type": "top_up", "amount": "10"})
    error_of(response, 401, "not_authenticated")
    assert Order.objects.count() == 0


def test_outsider_cannot_buy_in_another_platform(fake_stripe, member, outsider):
    response = post_json(client_for(outsider, platform_key="acme"), CHECKOUT_URL, {
        "channel": "stripe", "type": "top_up", "amount": "10", "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL})
    error_of(response, 403, "not_a_member")
    assert Order.objects.count() == 0 and fake_stripe.requests == []


def test_owners_and_admins_buy_for_their_own_account(fake_stripe, platform):
    owner = make_member(platform, "olga", Role.OWNER)
    assert checkout(owner, "10").status_code == 201
    assert Order.objects.get().account_id == owner.account.id


def test_stripe_failure_is_a_502_and_the_order_is_failed(fake_stripe, member):
    fake_stripe.fail_status = 500
    before = db_snapshot()
    error_of(checkout(member), 502, "payment_provider_error")
    order = Order.objects.get()
    assert order.status == OrderStatus.FAILED and order.failed_at is not None
    assert "checkout session not created" in order.last_error
    assert order.provider_checkout_id == "" and order.checkout_url == ""
    assert db_snapshot() == before  # no credits moved


def test_unconfigured_stripe_is_a_503_before_anything_is_written(fake_stripe, member, settings):
    settings.STRIPE_SECRET_KEY = ""
    error_of(checkout(member), 503, "payment_provider_not_configured")
    assert Order.objects.count() == 0 and fake_stripe.requests == []


def test_origin_normalisation():
    from payments.selectors import origin_of

    assert origin_of("https://App.Acme.Test:443/x?y#z") == "https://app.acme.test"
    assert origin_of("http://app.acme.test:80/") == "http://app.acme.test"
    assert origin_of("https://app.acme.test:8443") == "https://app.acme.test:8443"
    for bad in ["javascript:alert(1)", "//evil.test", "https://a@b.test", "https://b.test:99999/",
                "https:///evil.test", "https://evil.test\\x", " https://app.acme.test", "mailto:x@y.test"]:
        assert origin_of(bad) is None, bad
    assert APP_ORIGIN == origin_of(APP_ORIGIN)
