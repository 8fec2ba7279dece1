"""Reliability of the subscription events: redeliveries at once, and every arrival order.

The four events of one subscription purchase (checkout completed, first invoice paid, subscription updated,
charge partly refunded) are delivered signed to the endpoint in each of the 24 orders, each on a fresh
platform and account; every order must end in the same state. Each event delivered 5 times at once (real
threads, one connection each) writes its ledger row exactly once."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from accounts.models import Platform
from credits.models import LedgerEntry
from payments.models import Order, PlanCreditPeriod, WebhookEvent
from subscriptions.models import Subscription, SubscriptionChange
from tests.conftest import make_member, make_platform
from tests.credits.test_ledger_concurrency import run_together
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.payments import stripe_subscriptions
from tests.payments.conftest import deliver
from tests.payments.stripe_subscriptions import (
    DAY,
    T0,
    charge_refunded,
    invoice_paid,
    session_completed,
    subscribe,
    subscription_event,
)
from tests.subscriptions.conftest import make_plan

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe fixture

KINDS = ("checkout", "invoice", "updated", "refund")


def purchase(platform: Platform, tag: str) -> dict[str, Any]:
    """A plan, a member and their pending subscription order made through the API; and the four events
    Stripe sends about it (created one second apart, in this order)."""
    plan = make_plan(
        platform,
        "pro",
        price_monthly=1000,
        credits_included=Decimal(100),
        stripe_price_monthly="price_pro_m",
        stripe_price_yearly="price_pro_y",
    )
    member = make_member(platform, "s" + tag.replace("_", ""))
    response = subscribe(member, str(plan.pk))
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    sub, pi = f"sub_{tag}", f"pi_{tag}"
    meta = {"order_id": str(order.id), "account_id": str(member.account.id), "plan_id": str(plan.pk)}
    period = {"period_start": T0, "period_end": T0 + 31 * DAY}
    events = {
        "checkout": session_completed(
            order_id=str(order.id), session_id=order.provider_checkout_id, subscription_id=sub, created=T0 + 1
        ),
        "invoice": invoice_paid(
            subscription_id=sub,
            price_id="price_pro_m",
            metadata=meta,
            payment_intent=pi,
            billing_reason="subscription_create",
            created=T0 + 2,
            **period,
        ),
        "updated": subscription_event(
            "updated",
            subscription_id=sub,
            price_id="price_pro_m",
            metadata=meta,
            cancel_at_period_end=True,
            created=T0 + 3,
            **period,
        ),
        "refund": charge_refunded(
            charge_id=f"ch_{tag}", payment_intent=pi, amount=1000, amount_refunded=400, created=T0 + 4
        ),
    }
    return {"member": member, "order": order, "events": events, "sub": sub, "pi": pi}


def final_state(p: dict[str, Any]) -> dict[str, Any]:
    account = p["member"].account
    account.refresh_from_db()
    order = Order.objects.get(pk=p["order"].pk)
    subscription = Subscription.objects.get(account=account)
    grant = LedgerEntry.objects.get(
        account=account, transaction_type="add", reference__startswith="subscription:"
    )
    assert_ledger_invariants(account)
    return {
        "ledger": [
            (r.transaction_type, r.balance_delta)
            for r in LedgerEntry.objects.filter(account=account).order_by("sequence")
        ],
        "balance": (account.balance, account.reserved),
        "subscription": (
            subscription.status,
            subscription.plan.slug,
            subscription.billing_cycle,
            subscription.current_period_start,
            subscription.current_period_end,
            subscription.cancel_at_period_end,
            subscription.trial_end,
            subscription.provider_subscription_id == p["sub"],
            subscription.provider_customer_id,
            subscription.synced_at,
            subscription.ended_at,
        ),
        "order": (
            order.status,
            order.amount_paid_usd,
            order.amount_refunded_usd,
            order.credits_reversed,
            order.refund_shortfall_credits,
            order.needs_review,
            order.provider_subscription_id == p["sub"],
            order.provider_customer_id,
            order.provider_payment_id == p["pi"],
            order.ledger_entry_id == grant.pk,
            order.paid_at is not None,
            order.refunded_at is not None,
        ),
        "periods": list(
            PlanCreditPeriod.objects.filter(subscription=subscription).values_list("granted", "carried_in")
        ),
        "events": sorted(
            WebhookEvent.objects.filter(event_id__in=[e["id"] for e in p["events"].values()]).values_list(
                "type", "status"
            )
        ),
    }


EXPECTED_LEDGER = [("add", Decimal(100)), ("refund", Decimal(-40))]


@pytest.mark.django_db
def test_every_arrival_order_ends_in_the_same_state(stripe_billing):
    states = {}
    for i, order in enumerate(itertools.permutations(KINDS)):
        p = purchase(make_platform(f"perm{i}"), f"perm{i}")
        for kind in order:
            response = deliver(p["events"][kind])
            assert response.status_code == 200, (order, kind, response.content)
        states[order] = final_state(p)

    reference = states[KINDS]
    assert reference["ledger"] == EXPECTED_LEDGER
    assert reference["balance"] == (Decimal(60), Decimal(0))
    assert reference["subscription"][:2] == ("active", "pro") and reference["subscription"][5] is True
    assert reference["order"][:6] == (
        "partially_refunded",
        Decimal("10.00"),
        Decimal("4.00"),
        Decimal(40),
        0,
        False,
    )
    assert all(status == "processed" for _, status in reference["events"])
    different = {order: state for order, state in states.items() if state != reference}
    assert different == {}, next(iter(different.items()))


# --- each event delivered 5 times at once -----------------------------------------------------------------


def _five_at_once(event: dict[str, Any]) -> None:
    results = run_together([lambda: deliver(event) for _ in range(5)])
    for kind, value in results:
        assert kind == "ok", value
        assert value.status_code == 200, value.content
    bodies = sorted((r.json()["status"], r.json()["duplicate"]) for _, r in results)
    assert bodies in (
        [("processed", False)] + [("processed", True)] * 4,
        [("ignored", False)] + [("ignored", True)] * 4,
    ), bodies


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", KINDS)
def test_each_event_delivered_five_times_at_once_writes_once(stripe_billing, platform, kind):
    p = purchase(platform, f"conc_{kind}")
    before = KINDS[: KINDS.index(kind)] if kind != "updated" else ("checkout", "invoice")
    for earlier in before:
        assert deliver(p["events"][earlier]).status_code == 200

    _five_at_once(p["events"][kind])

    account = p["member"].account
    ledger = list(
        LedgerEntry.objects.filter(account=account).values_list("transaction_type", "balance_delta")
    )
    changes = SubscriptionChange.objects.filter(subscription__account=account)
    if kind == "checkout":
        assert ledger == [] and Subscription.objects.filter(account=account).count() == 1
        assert changes.count() == 1 and Order.objects.get(pk=p["order"].pk).status == "paid"
    elif kind == "invoice":
        assert ledger == [("add", Decimal(100))]
        assert PlanCreditPeriod.objects.count() == 1
    elif kind == "updated":
        assert ledger == [("add", Decimal(100))]
        assert Subscription.objects.get(account=account).cancel_at_period_end is True
        assert changes.count() == 1  # started; the update changes no plan or status
    else:
        assert sorted(ledger) == [("add", Decimal(100)), ("refund", Decimal(-40))]
    account.refresh_from_db()
    assert_ledger_invariants(account)
    assert WebhookEvent.objects.get(event_id=p["events"][kind]["id"]).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_all_four_events_five_times_each_at_once_end_like_one_delivery_in_order(stripe_billing, platform):
    p = purchase(platform, "storm")
    workers = [lambda e=e: deliver(e) for e in p["events"].values() for _ in range(5)]

    results = run_together(workers)

    for kind, value in results:
        assert kind == "ok", value
        assert value.status_code == 200, value.content
    state = final_state(p)
    assert state["ledger"] == EXPECTED_LEDGER
    assert state["order"][:6] == (
        "partially_refunded",
        Decimal("10.00"),
        Decimal("4.00"),
        Decimal(40),
        0,
        False,
    )
    assert state["subscription"][5] is True
    assert all(status == "processed" for _, status in state["events"])
