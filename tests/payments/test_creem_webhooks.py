"""POST /api/billing/webhooks/creem/: deliveries signed as Creem signs them, stored once, processed once; each
paid period of a Creem subscription grants the plan's credits exactly once, whatever the arrival order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from credits.models import CreditAccount, LedgerEntry, TransactionType
from payments.models import Order, OrderStatus, WebhookEvent, WebhookStatus
from payments.providers import creem as creem_provider
from subscriptions.models import Subscription, SubscriptionStatus
from tests.api_helpers import db_snapshot, error_of
from tests.conftest import make_member
from tests.payments.creem_support import (
    PERIOD_1,
    PERIOD_2,
    WEBHOOK_SECRET,
    checkout_completed,
    creem_plan,
    deliver,
    refund_created,
    sign,
    start_subscription_checkout,
    subscription_event,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 10, 12, 12, 0, tzinfo=UTC)


def grants(account_id) -> list[LedgerEntry]:  # noqa: ANN001
    return list(LedgerEntry.objects.filter(account_id=account_id, transaction_type=TransactionType.ADD,
                                           reference__startswith="creem:").order_by("sequence"))


def balance(member) -> Decimal:  # noqa: ANN001
    return CreditAccount.objects.get(pk=member.account.id).balance


def receipt(response, status: str, duplicate: bool = False) -> dict:  # noqa: ANN001
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {"received": True, "event_id": body["event_id"], "status": status, "duplicate": duplicate}
    return body


def state() -> tuple:
    orders = tuple(Order.objects.order_by("id").values_list(
        "id", "status", "needs_review", "last_error", "ledger_entry_id", "paid_at", "updated_at"))
    events = tuple(WebhookEvent.objects.order_by("id").values_list("id", "status", "attempts", "updated_at"))
    subscriptions = tuple(Subscription.objects.order_by("id").values_list("id", "status", "updated_at"))
    return db_snapshot(), orders, events, subscriptions


@pytest.fixture
def bought(fake_creem, member):  # noqa: ANN001, ANN201
    plan = creem_plan(member.platform)
    return member, plan, start_subscription_checkout(member, plan)


# --- the signature ------------------------------------------------------------------------------------------


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body():
    payload = b'{"id": "evt_1", "eventType": "ping", "object": {}}'
    assert creem_provider.signature_of(payload, WEBHOOK_SECRET) == sign(payload)
    assert len(sign(payload)) == 64 and int(sign(payload), 16) >= 0


@pytest.mark.parametrize(
    "tamper",
    ["body", "wrong_secret", "missing", "empty", "not_hex", "uppercase_other"],
)
def test_a_delivery_without_a_valid_signature_is_a_400_that_writes_nothing(bought, tamper):
    member, plan, order = bought
    event = subscription_event("subscription.paid", order)
    payload = json.dumps(event)
    before = state()
    if tamper == "body":
        response = deliver(payload.replace('"active"', '"canceled"'), header=sign(payload))
    elif tamper == "wrong_secret":
        response = deliver(payload, secret="whsec_someone_else")
    elif tamper == "missing":
        response = deliver(payload, header=None)
    elif tamper == "empty":
        response = deliver(payload, header="")
    elif tamper == "not_hex":
        response = deliver(payload, header="é" * 64)
    else:
        response = deliver(payload, header=sign(payload + " "))
    error_of(response, 400, "invalid_signature")
    assert state() == before and WebhookEvent.objects.count() == 0


def test_a_signed_body_that_is_not_an_event_is_a_400(bought):
    for payload in ["[]", '{"id": "evt_1"}', "not json", '{"id": "evt_1", "eventType": "x", "object": 3}']:
        error_of(deliver(payload), 400, "invalid_payload")
    assert WebhookEvent.objects.count() == 0


def test_unconfigured_webhooks_are_a_503(bought, settings):
    settings.CREEM_WEBHOOK_SECRET = ""
    response = deliver(subscription_event("subscription.paid", bought[2]))
    error_of(response, 503, "payment_provider_not_configured")
    assert WebhookEvent.objects.count() == 0


# --- a subscription bought through Creem --------------------------------------------------------------------


def test_checkout_completed_then_subscription_paid_starts_the_plan_and_grants_its_credits_once(bought):
    member, plan, order = bought
    balance = CreditAccount.objects.get(pk=member.account.id).balance

    receipt(deliver(checkout_completed(order, created=T0)), "processed")

    stored = Order.objects.get(pk=order["id"])
    assert stored.status == OrderStatus.PAID and stored.paid_at is not None
    assert (stored.provider_subscription_id, stored.provider_customer_id, stored.provider_payment_id) == (
        "sub_test_1", "cust_test_1", "ord_test_1")
    assert stored.amount_paid_usd == Decimal("20.00")
    subscription = Subscription.objects.get()
    assert (subscription.provider, subscription.provider_subscription_id, subscription.status,
            subscription.plan_id, subscription.billing_cycle, subscription.account_id) == (
        "creem", "sub_test_1", "active", plan.pk, "monthly", member.account.id)
    assert grants(member.account.id) == []  # no period in this checkout.completed: subscription.paid grants

    receipt(deliver(subscription_event("subscription.paid", order, created=T0 + timedelta(seconds=2))),
            "processed")

    [grant] = grants(member.account.id)
    assert (grant.balance_delta, grant.payment_amount_usd) == (Decimal("500"), Decimal("20.00"))
    assert grant.idempotency_key == "creem:sub_test_1:2026-10-12T11:58:38+00:00"
    assert CreditAccount.objects.get(pk=member.account.id).balance == balance + Decimal("500")
    subscription.refresh_from_db()
    assert subscription.current_period_start == PERIOD_1
    assert subscription.current_period_end == PERIOD_1 + timedelta(days=31)
    assert Order.objects.get(pk=order["id"]).ledger_entry_id == grant.pk
    assert set(WebhookEvent.objects.values_list("provider", "status")) == {("creem", "processed")}


def test_a_checkout_completed_with_the_period_and_its_subscription_paid_grant_once(bought):
    member, plan, order = bought
    receipt(deliver(checkout_completed(order, with_period=True, created=T0)), "processed")
    assert len(grants(member.account.id)) == 1
    receipt(deliver(subscription_event("subscription.paid", order, created=T0 + timedelta(seconds=1))),
            "processed")
    [grant] = grants(member.account.id)
    assert grant.balance_delta == Decimal("500")


def test_each_renewal_grants_the_plan_credits_once(bought):
    member, plan, order = bought
    deliver(checkout_completed(order, created=T0))
    deliver(subscription_event("subscription.paid", order, created=T0 + timedelta(seconds=1)))
    renewal = subscription_event("subscription.paid", order, period_start=PERIOD_2,
                                 created=T0 + timedelta(days=31))

    receipt(deliver(renewal), "processed")
    receipt(deliver(renewal), "processed", duplicate=True)

    assert [g.balance_delta for g in grants(member.account.id)] == [Decimal("500"), Decimal("500")]
    assert Subscription.objects.get().current_period_start == PERIOD_2


def test_a_duplicate_delivery_is_a_200_that_changes_nothing(bought):
    member, plan, order = bought
    event = checkout_completed(order, with_period=True, created=T0)
    receipt(deliver(event), "processed")
    before = state()
    receipt(deliver(event), "processed", duplicate=True)
    assert state() == before
    assert WebhookEvent.objects.get().attempts == 1


def test_an_unhandled_type_is_stored_and_answered_200(bought):
    member, plan, order = bought
    before = db_snapshot()
    body = receipt(deliver(subscription_event("subscription.trialing_custom", order)), "ignored")
    stored = WebhookEvent.objects.get(event_id=body["event_id"])
    assert (stored.provider, stored.type, stored.status) == (
        "creem", "subscription.trialing_custom", "ignored")
    assert stored.payload["eventType"] == "subscription.trialing_custom"
    assert db_snapshot() == before


def test_an_event_naming_no_order_or_subscription_of_ours_is_ignored(bought):
    receipt(deliver(subscription_event("subscription.paid", None, subscription_id="sub_other")), "ignored")
    receipt(deliver(checkout_completed({"id": "not-ours", "provider_checkout_id": "ch_x"})), "ignored")
    assert Subscription.objects.count() == 0
    assert not LedgerEntry.objects.filter(reference__startswith="creem:")


def test_a_processing_failure_is_recorded_and_answered_500_then_a_redelivery_succeeds(bought):
    member, plan, order = bought
    event = subscription_event("subscription.paid", order)
    event["object"]["metadata"] = {"order_id": "00000000-0000-0000-0000-000000000001"}  # not here (yet)

    error_of(deliver(event), 500, "webhook_processing_failed")
    stored = WebhookEvent.objects.get()
    assert (stored.status, stored.attempts) == (WebhookStatus.FAILED, 1)
    assert "not found" in stored.last_error
    assert Subscription.objects.count() == 0 and grants(member.account.id) == []

    error_of(deliver(event), 500, "webhook_processing_failed")
    assert WebhookEvent.objects.get().attempts == 2


def test_an_event_about_a_stripe_order_is_refused_and_flags_it(bought, member):
    member, plan, order = bought
    Order.objects.filter(pk=order["id"]).update(channel="stripe")
    body = receipt(deliver(subscription_event("subscription.paid", order)), "failed")
    flagged = Order.objects.get(pk=order["id"])
    assert flagged.needs_review and "stripe" in flagged.last_error
    assert WebhookEvent.objects.get(event_id=body["event_id"]).status == "failed"
    assert grants(member.account.id) == []


# --- arrival order ------------------------------------------------------------------------------------------


def _outcome(member, order_id: str, sub_id: str) -> tuple:  # noqa: ANN001
    order = Order.objects.get(pk=order_id)
    sub = Subscription.objects.get(account_id=member.account.id)
    return (
        order.status, order.provider_subscription_id == sub.provider_subscription_id == sub_id,
        order.ledger_entry_id is not None,
        sub.status, sub.plan_id, sub.billing_cycle, sub.current_period_start, sub.current_period_end,
        sub.synced_at,
        [(g.balance_delta, g.idempotency_key.split(":", 2)[2]) for g in grants(member.account.id)],
        CreditAccount.objects.get(pk=member.account.id).balance,
    )


def test_subscription_paid_before_checkout_completed_ends_in_the_same_state(fake_creem, platform):
    plan = creem_plan(platform)
    outcomes = []
    for name, first_paid in (("ann", False), ("bob", True)):
        member = make_member(platform, name)
        order = start_subscription_checkout(member, plan)
        sub_id = f"sub_{name}"
        completed = checkout_completed(order, subscription_id=sub_id, created=T0)
        paid = subscription_event("subscription.paid", order, subscription_id=sub_id,
                                  created=T0 + timedelta(seconds=2))
        for event in ([paid, completed] if first_paid else [completed, paid]):
            receipt(deliver(event), "processed")
        outcomes.append(_outcome(member, order["id"], sub_id))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][:4] == (OrderStatus.PAID, True, True, SubscriptionStatus.ACTIVE)
    assert [g[0] for g in outcomes[0][9]] == [Decimal("500")]


def test_a_late_older_event_does_not_undo_a_cancellation(bought):
    member, plan, order = bought
    deliver(checkout_completed(order, created=T0))
    receipt(deliver(subscription_event("subscription.canceled", order, status="canceled",
                                       canceled_at=T0 + timedelta(days=3), created=T0 + timedelta(days=3))),
            "processed")
    # The first period's payment event, delivered late: the credits are still owed, the status stays final.
    receipt(deliver(subscription_event("subscription.paid", order, created=T0 + timedelta(seconds=2))),
            "processed")
    sub = Subscription.objects.get()
    assert sub.status == SubscriptionStatus.CANCELED and sub.canceled_at == T0 + timedelta(days=3)
    assert [g.balance_delta for g in grants(member.account.id)] == [Decimal("500")]


def test_a_cancellation_before_anything_else_starts_then_ends_the_subscription(bought):
    member, plan, order = bought
    receipt(deliver(subscription_event("subscription.canceled", order, status="canceled",
                                       canceled_at=T0 + timedelta(days=3), created=T0 + timedelta(days=3))),
            "processed")
    receipt(deliver(checkout_completed(order, created=T0)), "processed")
    receipt(deliver(subscription_event("subscription.paid", order, created=T0 + timedelta(seconds=2))),
            "processed")
    assert Subscription.objects.get().status == SubscriptionStatus.CANCELED
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PAID
    assert len(grants(member.account.id)) == 1


def test_expired_is_past_due_because_creem_still_retries(bought):
    member, plan, order = bought
    deliver(checkout_completed(order, created=T0))
    receipt(deliver(subscription_event("subscription.expired", order, created=T0 + timedelta(days=32))),
            "processed")
    assert Subscription.objects.get().status == SubscriptionStatus.PAST_DUE
    receipt(deliver(subscription_event("subscription.paid", order, period_start=PERIOD_2,
                                       created=T0 + timedelta(days=33))), "processed")
    assert Subscription.objects.get().status == SubscriptionStatus.ACTIVE
    assert len(grants(member.account.id)) == 1  # only PERIOD_2: PERIOD_1's subscription.paid never came


def test_subscription_update_syncs_the_status(bought):
    member, plan, order = bought
    deliver(checkout_completed(order, created=T0))
    receipt(deliver(subscription_event("subscription.update", order, status="past_due",
                                       created=T0 + timedelta(days=1))), "processed")
    assert Subscription.objects.get().status == SubscriptionStatus.PAST_DUE
    # An update older than the last applied one changes nothing.
    receipt(deliver(subscription_event("subscription.update", order, status="active",
                                       created=T0 + timedelta(hours=1))), "processed")
    assert Subscription.objects.get().status == SubscriptionStatus.PAST_DUE


# --- refunds ------------------------------------------------------------------------------------------------


def _paid(order: dict) -> None:
    deliver(checkout_completed(order, with_period=True, created=T0))


def test_a_full_refund_takes_back_the_periods_credits_once(bought):
    member, plan, order = bought
    start = balance(member)
    _paid(order)
    event = refund_created(order)

    receipt(deliver(event), "processed")
    receipt(deliver(event), "processed", duplicate=True)

    [row] = LedgerEntry.objects.filter(account_id=member.account.id, transaction_type=TransactionType.REFUND)
    assert row.balance_delta == Decimal("-500")
    assert balance(member) == start
    stored = Order.objects.get(pk=order["id"])
    assert (stored.status, stored.amount_refunded_usd, stored.credits_reversed, stored.needs_review) == (
        OrderStatus.REFUNDED, Decimal("20.00"), Decimal("500"), False)
    assert stored.refunded_at is not None


def test_a_partial_refund_takes_back_its_share(bought):
    member, plan, order = bought
    _paid(order)
    receipt(deliver(refund_created(order, refund_amount=500, amount_paid=2000)), "processed")
    [row] = LedgerEntry.objects.filter(account_id=member.account.id, transaction_type=TransactionType.REFUND)
    assert row.balance_delta == Decimal("-125")
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PARTIALLY_REFUNDED


def test_a_refund_of_spent_credits_takes_what_is_left_and_flags_the_order(bought):
    member, plan, order = bought
    _paid(order)
    from credits.services import credits_debit

    credits_debit(account_id=member.account.id, amount=balance(member) - Decimal("50"), description="usage")
    receipt(deliver(refund_created(order)), "processed")
    assert balance(member) == Decimal("0")
    stored = Order.objects.get(pk=order["id"])
    assert (stored.credits_reversed, stored.refund_shortfall_credits, stored.needs_review) == (
        Decimal("50"), Decimal("450"), True)


def test_a_refund_before_its_grant_is_retried_until_the_grant_is_there(bought):
    member, plan, order = bought
    start = balance(member)
    event = refund_created(order)
    error_of(deliver(event), 500, "webhook_processing_failed")
    assert WebhookEvent.objects.get(event_id=event["id"]).status == WebhookStatus.FAILED
    _paid(order)
    receipt(deliver(event), "processed")
    assert balance(member) == start
