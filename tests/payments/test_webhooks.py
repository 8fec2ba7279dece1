"""POST /api/billing/webhooks/stripe/: signed deliveries (signed with the stripe library's own helper), stored
once, processed once; a paid top-up becomes exactly one ledger ``add`` row."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from decimal import Decimal

import pytest
import stripe
from django.test import Client

from credits.models import CreditAccount, LedgerEntry, TransactionType
from payments.models import Order, OrderStatus, WebhookEvent, WebhookStatus
from tests.api_helpers import TRANSACTIONS_URL, db_snapshot, error_of
from tests.conftest import client_for
from tests.payments.conftest import (
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    deliver,
    session_event,
    signature_header,
    start_top_up,
)

pytestmark = pytest.mark.django_db

COMPLETED = "checkout.session.completed"
SUCCEEDED = "checkout.session.async_payment_succeeded"
FAILED = "checkout.session.async_payment_failed"


def add_rows(order: dict) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(reference=f"order:{order['id']}"))


def receipt(response, status: str, duplicate: bool = False) -> dict:  # noqa: ANN001
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {"received": True, "event_id": body["event_id"], "status": status, "duplicate": duplicate}
    return body


def state() -> tuple:
    """Everything a delivery could change: ledger, accounts, orders, stored events."""
    orders = tuple(Order.objects.order_by("id").values_list(
        "id", "status", "needs_review", "last_error", "ledger_entry_id", "paid_at", "failed_at", "updated_at"))
    events = tuple(WebhookEvent.objects.order_by("id").values_list("id", "status", "attempts", "updated_at"))
    return db_snapshot(), orders, events


# --- the signature helper -----------------------------------------------------------------------------------


def test_the_library_signature_helper_round_trips_and_matches_stripes_documented_scheme():
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "ping", "data": {"object": {}}})
    timestamp = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET, timestamp=timestamp)
    # Stripe's documented scheme: v1 = hex HMAC-SHA256(secret, "<t>.<raw body>").
    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    assert header == f"t={timestamp},v1={expected}"
    event = stripe.Webhook.construct_event(payload, header, WEBHOOK_SECRET, tolerance=300)
    assert event["id"] == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload + " ", header, WEBHOOK_SECRET, tolerance=300)


# --- a paid top-up -----------------------------------------------------------------------------------------------


def test_a_paid_checkout_credits_the_order_once(fake_stripe, member):
    order = start_top_up(member, "25.50")
    balance_before = CreditAccount.objects.get(pk=member.account.id).balance

    receipt(deliver(session_event(COMPLETED, order)), "processed")

    [row] = add_rows(order)
    assert row.transaction_type == TransactionType.ADD
    assert row.account_id == member.account.id
    assert row.balance_delta == Decimal("25.50")
    assert row.payment_amount_usd == Decimal("25.50")
    assert row.idempotency_key == f"order:{order['id']}"
    assert CreditAccount.objects.get(pk=member.account.id).balance == balance_before + Decimal("25.50")
    paid = Order.objects.get(pk=order["id"])
    assert paid.status == OrderStatus.PAID and paid.paid_at is not None
    assert paid.ledger_entry_id == row.id
    assert paid.amount_paid_usd == Decimal("25.50")
    assert (paid.provider_payment_id, paid.provider_customer_id) == ("pi_test_1", "cus_test_1")
    stored = WebhookEvent.objects.get()
    assert (stored.status, stored.attempts, stored.order_id, stored.type) == ("processed", 1, paid.id, COMPLETED)
    assert stored.payload["data"]["object"]["client_reference_id"] == order["id"]

    # the member sees it: the order is paid and the transaction carries the payment
    shown = client_for(member).get(f"/api/billing/orders/{order['id']}/").json()
    assert shown["status"] == "paid" and shown["transaction_id"] == str(row.id)
    assert shown["amount_paid_usd"] == "25.50"
    top = client_for(member).get(TRANSACTIONS_URL).json()["results"][0]
    assert (top["transaction_type"], top["payment_amount_usd"], top["credits_amount"]) == ("add", "25.50", "25.50")


def test_a_redelivery_is_a_200_that_changes_nothing(fake_stripe, member):
    order = start_top_up(member)
    event = session_event(COMPLETED, order)
    receipt(deliver(event), "processed")
    before = state()

    for _ in range(3):
        receipt(deliver(event), "processed", duplicate=True)

    assert state() == before
    assert len(add_rows(order)) == 1


def test_both_paid_events_of_one_order_credit_it_once(fake_stripe, member):
    order = start_top_up(member)
    receipt(deliver(session_event(COMPLETED, order)), "processed")
    receipt(deliver(session_event(SUCCEEDED, order)), "processed")
    assert len(add_rows(order)) == 1
    assert WebhookEvent.objects.filter(status="processed").count() == 2


# --- rejected deliveries ---------------------------------------------------------------------------------------


def _tampered(order: dict) -> object:
    event = session_event(COMPLETED, order)
    payload = json.dumps(event)
    header = signature_header(payload)
    return deliver(payload.replace('"amount_total": 2500', '"amount_total": 250000'), header=header)


REJECTIONS = {
    "tampered body": _tampered,
    "wrong secret": lambda order: deliver(session_event(COMPLETED, order), secret="whsec_someone_else"),
    "stale timestamp": lambda order: deliver(session_event(COMPLETED, order), timestamp=int(time.time()) - 301),
    "missing header": lambda order: deliver(session_event(COMPLETED, order), header=None),
    "empty header": lambda order: deliver(session_event(COMPLETED, order), header=""),
    "garbage header": lambda order: deliver(session_event(COMPLETED, order), header="t=abc,v1=zz"),
    "no v1 signature": lambda order: deliver(session_event(COMPLETED, order), header=f"t={int(time.time())}"),
    "v0 only": lambda order: deliver(
        session_event(COMPLETED, order),
        header=signature_header(json.dumps(session_event(COMPLETED, order))).replace("v1=", "v0="),
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_unverified_deliveries_are_400_with_nothing_written(fake_stripe, member, case):
    order = start_top_up(member)
    before = state()

    error_of(REJECTIONS[case](order), 400, "invalid_signature")

    assert state() == before
    assert WebhookEvent.objects.count() == 0
    assert add_rows(order) == []


def test_a_timestamp_within_the_tolerance_is_accepted(fake_stripe, member):
    order = start_top_up(member)
    receipt(deliver(session_event(COMPLETED, order), timestamp=int(time.time()) - 280), "processed")
    assert len(add_rows(order)) == 1


@pytest.mark.parametrize("payload", ["not json", "[1, 2]", '{"object": "event", "type": "x"}',
                                      '{"id": 5, "type": "x", "object": "event"}',
                                      '{"id": "evt_thin_1", "type": "v1.x", "object": "v2.core.event"}'])
def test_a_signed_body_that_is_not_an_event_is_400(fake_stripe, db, payload):
    error_of(deliver(payload), 400, "invalid_payload")
    assert WebhookEvent.objects.count() == 0


def test_unconfigured_webhook_secret_is_503_and_stores_nothing(fake_stripe, member, settings):
    order = start_top_up(member)
    settings.STRIPE_WEBHOOK_SECRET = ""
    error_of(deliver(session_event(COMPLETED, order), secret=WEBHOOK_SECRET), 503, "payment_provider_not_configured")
    assert WebhookEvent.objects.count() == 0 and add_rows(order) == []


def test_the_endpoint_is_public_and_csrf_exempt(fake_stripe, member):
    order = start_top_up(member)
    payload = json.dumps(session_event(COMPLETED, order))
    response = Client(enforce_csrf_checks=True).post(
        WEBHOOK_URL, data=payload, content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature_header(payload), HTTP_AUTHORIZATION="Token not-a-token",
    )
    receipt(response, "processed")
    error_of(Client().get(WEBHOOK_URL), 405, "method_not_allowed")


# --- events this service does not act on --------------------------------------------------------------------


def test_an_unhandled_type_is_stored_and_answered_200(fake_stripe, db):
    event = {"id": "evt_unhandled_1", "object": "event", "type": "customer.created",
             "data": {"object": {"id": "cus_1", "object": "customer"}}}
    receipt(deliver(event), "ignored")
    stored = WebhookEvent.objects.get()
    assert (stored.event_id, stored.type, stored.status, stored.order_id) == (
        "evt_unhandled_1", "customer.created", "ignored", None)
    assert stored.payload == event
    receipt(deliver(event), "ignored", duplicate=True)
    assert WebhookEvent.objects.count() == 1


@pytest.mark.parametrize("refs", [{"client_reference_id": None, "metadata": {}},
                                  {"client_reference_id": "cart-77", "metadata": {"order_id": "cart-77"}}])
def test_a_session_of_another_integration_is_ignored(fake_stripe, member, refs):
    order = start_top_up(member)
    before = db_snapshot()
    receipt(deliver(session_event(COMPLETED, order, **refs)), "ignored")
    assert db_snapshot() == before
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PENDING


# --- permanent disagreements: recorded, flagged, 200, never credited ----------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount_total": 2499}, "amount_total 2499 differs"),
        ({"amount_total": 250000}, "amount_total 250000 differs"),
        ({"currency": "eur"}, "paid in eur"),
        ({"mode": "subscription"}, "mode"),
        ({"payment_status": "no_payment_required"}, "payment_status"),
        ({"session_id": "cs_test_someone_else"}, "is not the order's"),
        ({"metadata": {"order_id": str(uuid.uuid4())}}, "name different orders"),
    ],
)
def test_a_session_that_disagrees_with_its_order_is_recorded_and_flagged(fake_stripe, member, change, reason):
    order = start_top_up(member, "25.00")
    before = db_snapshot()
    event = session_event(COMPLETED, order, **change)

    receipt(deliver(event), "failed")

    assert db_snapshot() == before  # no credit
    stored = WebhookEvent.objects.get()
    assert stored.status == WebhookStatus.FAILED and reason in stored.last_error and stored.attempts == 1
    flagged = Order.objects.get(pk=order["id"])
    assert flagged.status == OrderStatus.PENDING
    if "different orders" not in reason:  # with two order ids the event names no single order to flag
        assert flagged.needs_review and reason in flagged.last_error
    if "amount_total" in change:
        assert flagged.amount_paid_usd == Decimal(change["amount_total"]) / 100

    # A redelivery disagrees again: still no credit, still a 200.
    receipt(deliver(event), "failed")
    assert db_snapshot() == before
    assert WebhookEvent.objects.get().attempts == 2


# --- delayed payment methods, in either order of arrival --------------------------------------------------


def test_unpaid_completion_waits_for_the_delayed_payment(fake_stripe, member):
    order = start_top_up(member)
    receipt(deliver(session_event(COMPLETED, order, payment_status="unpaid")), "processed")
    waiting = Order.objects.get(pk=order["id"])
    assert waiting.status == OrderStatus.PENDING and add_rows(order) == []
    assert waiting.provider_payment_id == "pi_test_1"

    receipt(deliver(session_event(SUCCEEDED, order)), "processed")
    assert len(add_rows(order)) == 1
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PAID


def test_the_delayed_success_arriving_before_the_completion_credits_once(fake_stripe, member):
    order = start_top_up(member)
    receipt(deliver(session_event(SUCCEEDED, order)), "processed")
    receipt(deliver(session_event(COMPLETED, order, payment_status="unpaid")), "processed")
    assert len(add_rows(order)) == 1
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PAID


def test_a_failed_delayed_payment_fails_the_order(fake_stripe, member):
    order = start_top_up(member)
    before = db_snapshot()
    receipt(deliver(session_event(COMPLETED, order, payment_status="unpaid")), "processed")
    receipt(deliver(session_event(FAILED, order, payment_status="unpaid")), "processed")
    failed = Order.objects.get(pk=order["id"])
    assert failed.status == OrderStatus.FAILED and failed.failed_at is not None
    assert db_snapshot() == before
    assert client_for(member).get(f"/api/billing/orders/{order['id']}/").json()["status"] == "failed"


def test_the_failure_arriving_before_the_completion_keeps_the_order_failed(fake_stripe, member):
    order = start_top_up(member)
    receipt(deliver(session_event(FAILED, order, payment_status="unpaid")), "processed")
    receipt(deliver(session_event(COMPLETED, order, payment_status="unpaid")), "processed")
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.FAILED
    assert add_rows(order) == []


def test_a_failure_after_the_payment_changes_nothing(fake_stripe, member):
    order = start_top_up(member)
    receipt(deliver(session_event(SUCCEEDED, order)), "processed")
    before = db_snapshot()
    receipt(deliver(session_event(FAILED, order, payment_status="unpaid")), "processed")
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PAID
    assert db_snapshot() == before


# --- failures a later delivery may get past: recorded, 500, retried -----------------------------------------


def test_an_unknown_order_is_recorded_and_answered_500_until_it_can_be_processed(fake_stripe, member):
    known = start_top_up(member, "12.00")
    missing_id = str(uuid.uuid4())
    event = session_event(COMPLETED, known | {"id": missing_id}, session_id="cs_test_restored")
    before = db_snapshot()

    error_of(deliver(event), 500, "webhook_processing_failed")
    error_of(deliver(event), 500, "webhook_processing_failed")

    assert db_snapshot() == before
    stored = WebhookEvent.objects.get()
    assert stored.status == WebhookStatus.FAILED and stored.attempts == 2
    assert f"order {missing_id} not found" in stored.last_error

    # The order turns up (say, restored from a backup): Stripe's next retry processes the event.
    original = Order.objects.get(pk=known["id"])
    Order.objects.create(
        id=missing_id, platform=original.platform, account=original.account, user=original.user, type="top_up",
        channel="stripe", amount_usd=Decimal("12.00"), credits=Decimal("12.00"), success_url=original.success_url,
        cancel_url=original.cancel_url, provider_checkout_id="cs_test_restored",
    )
    receipt(deliver(event), "processed")
    stored.refresh_from_db()
    assert (stored.status, stored.attempts, stored.last_error) == ("processed", 3, "")
    assert Order.objects.get(pk=missing_id).status == OrderStatus.PAID
    assert LedgerEntry.objects.filter(idempotency_key=f"order:{missing_id}").count() == 1
