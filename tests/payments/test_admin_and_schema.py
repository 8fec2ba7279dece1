"""The payments admin (settings editable, orders and events read-only, failed events re-processable) and the
payments endpoints' real responses against their OpenAPI documentation."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from credits.models import LedgerEntry
from payments.models import Order, PlatformPaymentSettings, WebhookEvent
from tests.api_helpers import post_json
from tests.conftest import client_for
from tests.payments.conftest import (
    CHECKOUT_URL,
    ORDERS_URL,
    WEBHOOK_URL,
    checkout,
    deliver,
    session_event,
    start_top_up,
)
from tests.test_service_endpoints import _check

pytestmark = pytest.mark.django_db

COMPLETED = "checkout.session.completed"


@pytest.fixture
def browser(db) -> Client:  # noqa: ANN001
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only"))
    return client


def test_changelists_render_with_filters_and_search(fake_stripe, browser, member):
    order = start_top_up(member)
    deliver(session_event(COMPLETED, order))
    for name, query in [("order", {"q": order["id"]}), ("order", {"status__exact": "paid"}),
                        ("webhookevent", {"status__exact": "processed"}), ("webhookevent", {"type": COMPLETED}),
                        ("platformpaymentsettings", {})]:
        response = browser.get(reverse(f"admin:payments_{name}_changelist"), query)
        assert response.status_code == 200, (name, query)
    assert order["id"].encode() in browser.get(reverse("admin:payments_order_changelist"),
                                               {"q": order["id"]}).content


def test_orders_and_events_are_read_only(fake_stripe, browser, member):
    order = start_top_up(member)
    deliver(session_event(COMPLETED, order))
    event = WebhookEvent.objects.get()
    assert browser.get(reverse("admin:payments_order_add")).status_code == 403
    assert browser.get(reverse("admin:payments_webhookevent_add")).status_code == 403
    assert browser.post(reverse("admin:payments_order_delete", args=[order["id"]]), {"post": "yes"}).status_code == 403
    browser.post(reverse("admin:payments_order_change", args=[order["id"]]), {"status": "refunded"})
    assert Order.objects.get(pk=order["id"]).status == "paid"
    assert browser.get(reverse("admin:payments_webhookevent_change", args=[event.pk])).status_code == 200


def test_settings_form_validates_limits_and_origins(browser, platform):
    url = reverse("admin:payments_platformpaymentsettings_add")
    base = {"platform": platform.pk, "top_up_min_usd": "2.00", "top_up_max_usd": "50.00"}
    for bad in [{"top_up_max_usd": "1.00"}, {"top_up_min_usd": "0"},
                {"allowed_redirect_origins": '["https://app.acme.test/path"]'},
                {"allowed_redirect_origins": '["javascript:alert(1)"]'},
                {"allowed_redirect_origins": '"https://app.acme.test"'}]:
        data = base | {"allowed_redirect_origins": "[]"} | bad
        assert browser.post(url, data).status_code == 200, bad  # the form again, with errors
        assert not PlatformPaymentSettings.objects.exists(), bad
    response = browser.post(url, base | {"allowed_redirect_origins": '["HTTPS://Shop.Acme.Test:443"]'})
    assert response.status_code == 302
    saved = PlatformPaymentSettings.objects.get()
    assert (saved.top_up_min_usd, saved.top_up_max_usd) == (Decimal("2.00"), Decimal("50.00"))
    assert saved.allowed_redirect_origins == ["https://shop.acme.test"]


def test_a_failed_event_can_be_processed_again_from_the_admin(fake_stripe, browser, member):
    known = start_top_up(member, "9.00")
    missing = str(uuid.uuid4())
    deliver(session_event(COMPLETED, known | {"id": missing}, session_id="cs_test_late"))
    event = WebhookEvent.objects.get()
    assert event.status == "failed"
    original = Order.objects.get(pk=known["id"])
    Order.objects.create(id=missing, platform=original.platform, account=original.account, user=original.user,
                         type="top_up", channel="stripe", amount_usd=Decimal("9.00"), credits=Decimal("9.00"),
                         success_url=original.success_url, cancel_url=original.cancel_url)
    response = browser.post(reverse("admin:payments_webhookevent_changelist"),
                            {"action": "process_again", "_selected_action": [event.pk]})
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.status == "processed"
    assert LedgerEntry.objects.filter(idempotency_key=f"order:{missing}").count() == 1


@pytest.fixture(scope="module")
def schema() -> dict:
    return Client().get("/api/schema/?format=json").json()


def test_real_responses_match_the_schema(schema, fake_stripe, member, other_member):
    created = checkout(member, "20.00")
    _check(schema, CHECKOUT_URL, "post", created)
    _check(schema, CHECKOUT_URL, "post", checkout(member, "1.00"))
    _check(schema, CHECKOUT_URL, "post", checkout(member, channel="creem"))
    _check(schema, CHECKOUT_URL, "post", post_json(APIClient(), CHECKOUT_URL, {}))
    order = client_for(member).get(f"{ORDERS_URL}{created.json()['order_id']}/")
    detail = "/api/billing/orders/{order_id}/"
    _check(schema, detail, "get", order)
    _check(schema, detail, "get", client_for(other_member).get(f"{ORDERS_URL}{created.json()['order_id']}/"))
    _check(schema, WEBHOOK_URL, "post", deliver(session_event(COMPLETED, order.json())))
    _check(schema, WEBHOOK_URL, "post", deliver(session_event(COMPLETED, order.json()), header=None))
    _check(schema, WEBHOOK_URL, "post", deliver(session_event(COMPLETED, order.json() | {"id": str(uuid.uuid4())})))
    _check(schema, ORDERS_URL, "get", client_for(member).get(ORDERS_URL))
    _check(schema, ORDERS_URL, "get", client_for(member).get(ORDERS_URL, {"pagination": "cursor"}))
    _check(schema, detail, "get", client_for(member).get(f"{ORDERS_URL}{created.json()['order_id']}/"))
