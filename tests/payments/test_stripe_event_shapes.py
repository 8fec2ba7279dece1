"""The Stripe event readers (payments/providers/stripe.py) on both shapes: the newer one (API version 2025-03-31
and later) first, the older one as the fallback (accounts pinned to older versions, and localstripe, which
speaks 2017-08-15), and ``invoice.payment_succeeded`` handled like ``invoice.paid``, once per period."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal
from typing import Any

import pytest

from credits.models import LedgerEntry
from payments.models import PlanCreditPeriod, WebhookEvent
from payments.providers.stripe_events import charge_facts, invoice_facts, subscription_facts
from subscriptions.models import Subscription
from tests.conftest import make_member
from tests.payments import stripe_subscriptions
from tests.payments.conftest import deliver
from tests.payments.stripe_subscriptions import DAY, T0, invoice_paid, subscription_event
from tests.subscriptions.conftest import make_plan

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe fixture (sets the webhook secret)

P1, P2 = T0, T0 + 31 * DAY
_ids = itertools.count(1)


def event(event_type: str, obj: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    return {"id": f"evt_shape_{next(_ids):06d}", "object": "event", "type": event_type, "api_version": "2017-08-15",
            "created": created or int(time.time()), "data": {"object": obj}}


def plan_object(plan_id: str) -> dict[str, Any]:
    """A Plan as older API versions (and localstripe) embed it: prices were plans."""
    return {"id": plan_id, "object": "plan", "amount": 1000, "currency": "usd", "interval": "month",
            "product": "prod_x"}


def oldest_invoice(*, subscription_id: str, plan_id: str, metadata: dict[str, str], event_type: str = "invoice.paid",
                   invoice_id: str = "in_old_1", created: int | None = None) -> dict[str, Any]:
    """An invoice in the shape localstripe sends (2017-08-15): ``invoice.subscription``, ``payment_intent`` and an
    expanded ``charge``, lines with ``type``, ``plan`` and ``period``, the subscription's metadata only on its line;
    an earlier proration line (``invoiceitem``) comes first."""
    return event(event_type, {
        "id": invoice_id, "object": "invoice", "customer": "cus_old", "currency": "usd", "amount_paid": 1000,
        "billing_reason": None, "status": "paid", "subscription": subscription_id, "payment_intent": "pi_old_1",
        "charge": {"id": "ch_old_1", "object": "charge", "payment_intent": "pi_old_1"},
        "metadata": {}, "period_start": P1, "period_end": P2,
        "lines": {"object": "list", "data": [
            {"id": "il_proration", "object": "line_item", "type": "invoiceitem", "subscription": subscription_id,
             "proration": True, "plan": plan_object("price_previous"), "amount": -300, "metadata": {},
             "period": {"start": P1 - DAY, "end": P1}},
            {"id": "il_sub", "object": "line_item", "type": "subscription", "subscription": subscription_id,
             "subscription_item": "si_old", "plan": plan_object(plan_id), "amount": 1000, "metadata": metadata,
             "period": {"start": P1, "end": P2}},
        ]},
    }, created)


# --- invoices ------------------------------------------------------------------------------------------------


def test_the_newer_invoice_shape_is_read():
    facts = invoice_facts(invoice_paid(subscription_id="sub_new", price_id="price_new", period_start=P1,
                                       period_end=P2, metadata={"account_id": "acc"}, payment_intent="pi_new",
                                       invoice_id="in_new", billing_reason="subscription_create"))

    assert (facts.invoice_id, facts.subscription_id, facts.price_id, facts.payment_intent_id) == (
        "in_new", "sub_new", "price_new", "pi_new")
    assert (facts.period_start, facts.period_end, facts.amount_paid, facts.metadata, facts.billing_reason) == (
        P1, P2, 1000, {"account_id": "acc"}, "subscription_create")


def test_the_older_invoice_shape_with_prices_is_read():
    facts = invoice_facts(invoice_paid(subscription_id="sub_old", price_id="price_old", period_start=P1,
                                       period_end=P2, metadata={"account_id": "acc"}, payment_intent="pi_old",
                                       legacy=True))

    assert (facts.subscription_id, facts.price_id, facts.payment_intent_id, facts.period_start, facts.metadata) == (
        "sub_old", "price_old", "pi_old", P1, {"account_id": "acc"})


def test_the_oldest_invoice_shape_with_plans_is_read_from_its_subscription_line():
    facts = invoice_facts(oldest_invoice(subscription_id="sub_old", plan_id="price_pro_m",
                                         metadata={"account_id": "acc"}))

    assert (facts.subscription_id, facts.price_id, facts.payment_intent_id, facts.customer_id) == (
        "sub_old", "price_pro_m", "pi_old_1", "cus_old")
    assert (facts.period_start, facts.period_end, facts.metadata, facts.billing_reason) == (
        P1, P2, {"account_id": "acc"}, "")


def test_a_newer_subscription_line_is_found_after_other_lines():
    payload = invoice_paid(subscription_id="sub_new", price_id="price_new", period_start=P1, period_end=P2,
                           metadata={})
    lines = payload["data"]["object"]["lines"]["data"]
    lines.insert(0, {"id": "il_item", "object": "line_item", "parent": {"type": "invoice_item_details"},
                     "pricing": {"price_details": {"price": "price_one_off"}}, "period": {"start": 1, "end": 2}})

    facts = invoice_facts(payload)

    assert (facts.price_id, facts.period_start) == ("price_new", P1)


def test_where_both_shapes_are_present_the_newer_one_wins():
    payload = invoice_paid(subscription_id="sub_new", price_id="price_new", period_start=P1, period_end=P2,
                           metadata={"account_id": "new"}, payment_intent="pi_new")
    invoice = payload["data"]["object"]
    invoice |= {"subscription": "sub_old", "payment_intent": "pi_old",
                "subscription_details": {"metadata": {"account_id": "old"}}}
    invoice["lines"]["data"][0] |= {"price": {"id": "price_old"}, "plan": plan_object("price_older")}

    facts = invoice_facts(payload)

    assert (facts.subscription_id, facts.payment_intent_id, facts.price_id, facts.metadata) == (
        "sub_new", "pi_new", "price_new", {"account_id": "new"})


# --- subscriptions -------------------------------------------------------------------------------------------


def test_the_newer_subscription_shape_is_read():
    facts = subscription_facts(subscription_event("updated", subscription_id="sub_new", price_id="price_new",
                                                  period_start=P1, period_end=P2, metadata={"account_id": "acc"}))

    assert (facts.subscription_id, facts.price_id, facts.current_period_start, facts.current_period_end) == (
        "sub_new", "price_new", P1, P2)


def test_the_older_subscription_shape_with_plans_and_periods_on_the_subscription_is_read():
    obj = {"id": "sub_old", "object": "subscription", "status": "active", "customer": "cus_old",
           "current_period_start": P1, "current_period_end": P2, "cancel_at_period_end": True, "canceled_at": None,
           "trial_end": None, "metadata": {"account_id": "acc"}, "plan": plan_object("price_pro_m"),
           "items": {"object": "list", "data": [{"id": "si_old", "object": "subscription_item",
                                                  "plan": plan_object("price_pro_m"), "quantity": 1}]}}

    facts = subscription_facts(event("customer.subscription.updated", obj))

    assert (facts.subscription_id, facts.customer_id, facts.status, facts.price_id) == (
        "sub_old", "cus_old", "active", "price_pro_m")
    assert (facts.current_period_start, facts.current_period_end, facts.cancel_at_period_end, facts.metadata) == (
        P1, P2, True, {"account_id": "acc"})
    del obj["items"]  # the oldest: one plan on the subscription itself
    assert subscription_facts(event("customer.subscription.updated", obj)).price_id == "price_pro_m"


def test_item_periods_win_over_the_subscriptions_own():
    payload = subscription_event("updated", subscription_id="sub_new", price_id="price_new", period_start=P2,
                                 period_end=P2 + 30 * DAY)
    payload["data"]["object"] |= {"current_period_start": P1, "current_period_end": P2}

    facts = subscription_facts(payload)

    assert (facts.current_period_start, facts.current_period_end) == (P2, P2 + 30 * DAY)


# --- charges -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("older", [False, True])
def test_a_refunded_charge_is_read_in_both_shapes(older):
    charge = {"id": "ch_1", "object": "charge", "amount": 1000, "amount_refunded": 400, "currency": "USD",
              "payment_intent": "pi_1", "metadata": {"order_id": "o-1"}}
    if older:  # the invoice named on the charge, and its refunds listed (as localstripe sends it)
        charge |= {"invoice": "in_1", "refunds": {"object": "list", "total_count": 1,
                                                  "data": [{"id": "re_1", "amount": 400}]}}

    facts = charge_facts(event("charge.refunded", charge))

    assert (facts.charge_id, facts.payment_intent_id, facts.amount, facts.amount_refunded, facts.currency) == (
        "ch_1", "pi_1", 1000, 400, "usd")
    assert (facts.invoice_id, facts.metadata) == ("in_1" if older else "", {"order_id": "o-1"})


# --- the handlers on the older shape ---------------------------------------------------------------------------


@pytest.fixture
def ada(platform):
    return make_member(platform, "ada")


@pytest.mark.django_db
@pytest.mark.parametrize("first", ["invoice.paid", "invoice.payment_succeeded"])
def test_invoice_paid_and_payment_succeeded_of_one_invoice_grant_once(stripe_billing, platform, ada, first):
    plan = make_plan(platform, "pro", stripe_price_monthly="price_pro_m")
    second = "invoice.payment_succeeded" if first == "invoice.paid" else "invoice.paid"
    meta = {"account_id": str(ada.account.id)}

    answers = [
        deliver(oldest_invoice(subscription_id="sub_both", plan_id="price_pro_m", metadata=meta, event_type=kind,
                               created=P1 + 60)).json()
        for kind in (first, second)
    ]

    assert [a["status"] for a in answers] == ["processed", "processed"]
    assert WebhookEvent.objects.get(event_id=answers[1]["event_id"]).last_error == (
        "the period's credits were already granted")
    assert list(LedgerEntry.objects.filter(account_id=ada.account.id).values_list(
        "transaction_type", "balance_delta")) == [("add", Decimal(100))]
    subscription = Subscription.objects.get(provider_subscription_id="sub_both")
    assert (subscription.plan_id, subscription.status) == (plan.pk, "active")
    period = PlanCreditPeriod.objects.get()
    assert (period.invoice_id, period.period_start.timestamp(), period.granted) == ("in_old_1", P1, Decimal(100))


@pytest.mark.django_db
def test_an_older_shape_subscription_update_changes_the_plan_named_by_its_items_plan(stripe_billing, platform, ada):
    pro = make_plan(platform, "pro", stripe_price_monthly="price_pro_m")
    team = make_plan(platform, "team", stripe_price_monthly="price_team_m", credits_included=Decimal(500))
    meta = {"account_id": str(ada.account.id)}
    assert deliver(oldest_invoice(subscription_id="sub_up", plan_id="price_pro_m", metadata=meta,
                                  created=P1 + 60)).json()["status"] == "processed"
    obj = {"id": "sub_up", "object": "subscription", "status": "active", "customer": "cus_old",
           "current_period_start": P1, "current_period_end": P2, "cancel_at_period_end": False,
           "canceled_at": None, "trial_end": None, "metadata": meta,
           "items": {"object": "list", "data": [{"id": "si_up", "plan": plan_object("price_team_m")}]}}

    answer = deliver(event("customer.subscription.updated", obj, created=P1 + 120)).json()

    assert answer["status"] == "processed"
    subscription = Subscription.objects.get(provider_subscription_id="sub_up")
    assert (subscription.plan_id, subscription.previous_plan_id) == (team.pk, pro.pk)
