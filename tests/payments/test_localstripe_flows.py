"""Stripe subscriptions, invoices and refunds end to end against localstripe: the real ``stripe`` library makes
the objects, localstripe posts its own signed events to our endpoint over HTTP, and the tests check what the
service wrote. What localstripe lacks, and how tests/payments/localstripe_billing.py makes up for it, is listed
there. (Off-session payment intents are covered by the auto-recharge tests.)"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from credits.models import CreditAccount, LedgerEntry, TransactionType
from payments.models import Order, OrderStatus, PlanCreditPeriod, WebhookEvent
from subscriptions.models import Subscription, SubscriptionStatus
from tests.conftest import Member, make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.payments.conftest import checkout
from tests.payments.localstripe_billing import (  # noqa: F401 - fixtures
    LocalStripeBilling,
    event_of,
    localstripe_billing,
    localstripe_billing_server,
    statuses,
)
from tests.payments.stripe_subscriptions import subscribe
from tests.subscriptions.conftest import make_plan

pytestmark = pytest.mark.django_db(transaction=True)

PROCESSED, IGNORED = "processed", "ignored"
FIRST_INVOICE = {  # what localstripe posts when a subscription starts, paid at once by card
    "customer.subscription.created": PROCESSED,
    "invoice.created": IGNORED,  # not handled: stored, answered 200
    "invoice.payment_succeeded": PROCESSED,
    "payment_intent.succeeded": IGNORED,  # the invoice's payment: no recharge, no top-up
}


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def ledger(member: Member) -> list[tuple[str, Decimal]]:
    return list(
        LedgerEntry.objects.filter(account_id=member.account.id)
        .order_by("sequence")
        .values_list("transaction_type", "balance_delta")
    )


def balance(member: Member) -> Decimal:
    return CreditAccount.objects.get(pk=member.account.id).balance


def snapshot(member: Member) -> tuple:
    """Everything a repeated delivery must leave alone."""
    return (
        ledger(member),
        list(Subscription.objects.filter(account_id=member.account.id).order_by("id").values()),
        list(Order.objects.filter(account_id=member.account.id).order_by("id").values()),
        list(PlanCreditPeriod.objects.order_by("id").values()),
        list(WebhookEvent.objects.order_by("id").values_list("event_id", "status", "attempts")),
    )


def assert_duplicate(response) -> None:
    assert response.status_code == 200, response.content
    assert response.json()["duplicate"] is True, response.json()


def pro_plan(platform, billing: LocalStripeBilling, credits: str = "100"):
    price = billing.price(amount=1000)
    return make_plan(platform, "pro", price_monthly=1000, credits_included=Decimal(credits),
                     stripe_price_monthly=price), price


def test_a_subscription_grants_its_plan_credits_once_and_ends_when_deleted(
    platform, localstripe_billing  # noqa: F811
):
    billing = localstripe_billing
    member = make_member(platform, "lena")
    plan, price = pro_plan(platform, billing)
    customer, _ = billing.customer_with_card()

    mark = billing.mark()
    sub = billing.subscribe(customer, price, {"account_id": str(member.account.id)})
    first = billing.settle(mark)

    assert statuses(first) == FIRST_INVOICE
    assert sub["status"] == "active"
    subscription = Subscription.objects.get(provider_subscription_id=sub["id"])
    assert (subscription.account_id, subscription.plan_id, subscription.billing_cycle, subscription.status) == (
        member.account.id, plan.pk, "monthly", SubscriptionStatus.ACTIVE)
    assert (subscription.provider_customer_id, subscription.current_period_start,
            subscription.current_period_end) == (customer, at(sub["current_period_start"]),
                                                 at(sub["current_period_end"]))
    assert ledger(member) == [(TransactionType.ADD, Decimal(100))]
    period = PlanCreditPeriod.objects.get(subscription=subscription)
    assert (period.invoice_id, period.period_start, period.granted) == (
        sub["latest_invoice"], at(sub["current_period_start"]), Decimal(100))

    # Every event again: nothing changes. invoice.paid for the same invoice (Stripe sends both): no more credits.
    before = snapshot(member)
    for event_id in first:
        assert_duplicate(billing.redeliver(event_id))
    assert snapshot(member) == before
    paid = billing.post(event_of("invoice.paid", billing.retrieve("invoices", sub["latest_invoice"])))
    assert paid.status_code == 200 and paid.json()["status"] == PROCESSED, paid.content
    assert WebhookEvent.objects.get(event_id=paid.json()["event_id"]).last_error == (
        "the period's credits were already granted")
    after = snapshot(member)
    assert (after[0], after[3]) == (before[0], before[3])  # the ledger and the granted periods
    subscription.refresh_from_db()
    assert (subscription.status, subscription.current_period_start) == (
        SubscriptionStatus.ACTIVE, at(sub["current_period_start"]))

    mark = billing.mark()
    billing.client().v1.subscriptions.cancel(sub["id"])
    deleted = billing.settle(mark)

    assert statuses(deleted) == {"customer.subscription.deleted": PROCESSED}
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELED and subscription.ended_at is not None
    assert ledger(member) == [(TransactionType.ADD, Decimal(100))]
    before = snapshot(member)
    assert_duplicate(billing.redeliver(next(iter(deleted))))
    assert snapshot(member) == before
    assert_ledger_invariants(CreditAccount.objects.get(pk=member.account.id))


def test_a_subscription_bought_through_checkout_is_paid_granted_once_and_refunded_in_part(
    platform, localstripe_billing  # noqa: F811
):
    billing = localstripe_billing
    member = make_member(platform, "sam")
    plan, price = pro_plan(platform, billing)
    response = subscribe(member, str(plan.pk))
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    session = billing.checkout.sessions[order.provider_checkout_id]["form"]
    assert (session["line_items[0][price]"], session["subscription_data[metadata][order_id]"]) == (price, str(order.id))

    mark = billing.mark()
    completed, sub = billing.complete_subscription(order.provider_checkout_id)
    answer = billing.post(completed)
    settled = billing.settle(mark)

    assert answer.status_code == 200 and answer.json()["status"] == PROCESSED, answer.content
    assert statuses(settled) == FIRST_INVOICE
    invoice = billing.retrieve("invoices", sub["latest_invoice"])
    order.refresh_from_db()
    grant = LedgerEntry.objects.get(account_id=member.account.id, transaction_type=TransactionType.ADD)
    assert (order.status, order.provider_subscription_id, order.provider_payment_id, order.provider_customer_id,
            order.amount_paid_usd, order.ledger_entry_id) == (
        OrderStatus.PAID, sub["id"], invoice["payment_intent"], sub["customer"], Decimal("10.00"), grant.id)
    subscription = Subscription.objects.get(provider_subscription_id=sub["id"])
    assert (subscription.plan_id, subscription.status) == (plan.pk, SubscriptionStatus.ACTIVE)
    assert ledger(member) == [(TransactionType.ADD, Decimal(100))]

    # 4.00 of the 10.00 back: 40 of the 100 credits leave.
    billing.refund(invoice["payment_intent"], 400)
    charge_id = billing.retrieve("payment_intents", invoice["payment_intent"])["latest_charge"]["id"]
    refunded = billing.charge_refunded(charge_id)
    charge = refunded["data"]["object"]
    assert (charge["amount"], charge["amount_refunded"], charge["refunds"]["total_count"]) == (1000, 400, 1)
    answer = billing.post(refunded)

    assert answer.status_code == 200 and answer.json()["status"] == PROCESSED, answer.content
    order.refresh_from_db()
    assert (order.status, order.amount_refunded_usd, order.credits_reversed, order.needs_review) == (
        OrderStatus.PARTIALLY_REFUNDED, Decimal("4.00"), Decimal(40), False)
    assert ledger(member) == [(TransactionType.ADD, Decimal(100)), (TransactionType.REFUND, Decimal(-40))]
    before = snapshot(member)
    assert_duplicate(billing.post(refunded))
    assert snapshot(member) == before
    assert balance(member) == Decimal(60)
    assert_ledger_invariants(CreditAccount.objects.get(pk=member.account.id))


def test_a_top_up_paid_by_payment_intent_is_credited_once_and_refunded_in_two_parts(
    platform, localstripe_billing  # noqa: F811
):
    billing = localstripe_billing
    member = make_member(platform, "tom")
    response = checkout(member, "25.00")
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])

    mark = billing.mark()
    completed = billing.complete_payment(order.provider_checkout_id)
    answer = billing.post(completed)
    settled = billing.settle(mark)

    assert answer.status_code == 200 and answer.json()["status"] == PROCESSED, answer.content
    assert statuses(settled) == {"payment_intent.succeeded": IGNORED}  # no card saved for later
    intent = completed["data"]["object"]["payment_intent"]
    assert billing.retrieve("payment_intents", intent)["metadata"] == {"order_id": str(order.id)}
    order.refresh_from_db()
    assert (order.status, order.provider_payment_id, order.amount_paid_usd) == (
        OrderStatus.PAID, intent, Decimal("25.00"))
    assert ledger(member) == [(TransactionType.ADD, Decimal(25))]

    billing.refund(intent, 1000)
    charge_id = billing.retrieve("payment_intents", intent)["latest_charge"]["id"]
    first = billing.charge_refunded(charge_id)
    assert billing.post(first).json()["status"] == PROCESSED
    order.refresh_from_db()
    assert (order.status, order.amount_refunded_usd) == (OrderStatus.PARTIALLY_REFUNDED, Decimal("10.00"))

    billing.refund(intent, 1500)
    second = billing.charge_refunded(charge_id)
    assert second["data"]["object"]["amount_refunded"] == 2500
    assert billing.post(second).json()["status"] == PROCESSED
    # The first refund's event again (a redelivery), and as a new event arriving late: nothing changes.
    before = snapshot(member)
    assert_duplicate(billing.post(first))
    late = billing.post(event_of("charge.refunded", first["data"]["object"]))
    assert late.json()["status"] == PROCESSED
    assert WebhookEvent.objects.get(event_id=late.json()["event_id"]).last_error == "refund already processed"

    order.refresh_from_db()
    assert (order.status, order.amount_refunded_usd, order.credits_reversed) == (
        OrderStatus.REFUNDED, Decimal("25.00"), Decimal(25))
    assert ledger(member) == before[0] == [
        (TransactionType.ADD, Decimal(25)), (TransactionType.REFUND, Decimal(-10)),
        (TransactionType.REFUND, Decimal(-15)),
    ]
    assert balance(member) == Decimal(0)
    assert_ledger_invariants(CreditAccount.objects.get(pk=member.account.id))
