"""charge.refunded of a renewal invoice: matched to its PlanCreditPeriod by the payment intent the invoice
recorded (or, in the older shapes, the charge's invoice); the refunded share of the period's credits leaves with
the order refunds' policy (only what is available; the shortfall recorded). Unmatched refunds stay ignored with a
note; a refund that arrives before its invoice is applied when the invoice comes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from credits.models import LedgerEntry
from credits.services import credits_debit, credits_grant
from payments.models import PlanCreditPeriod, WebhookEvent
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.payments import stripe_subscriptions
from tests.payments.conftest import deliver
from tests.payments.stripe_subscriptions import DAY, T0, charge_refunded, invoice_paid
from tests.payments.test_subscription_webhooks import at, balance, pay, plan_of, rows

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe fixture

pytestmark = pytest.mark.django_db

P1, P2, P3 = T0, T0 + 31 * DAY, T0 + 59 * DAY


@pytest.fixture
def ren(platform):
    from tests.conftest import make_member

    return make_member(platform, "ren")


def refund(cents: int, *, pi: str = "pi_renew_2", charge: str = "ch_renew_2", **kwargs) -> dict:
    event = charge_refunded(charge_id=charge, payment_intent=pi, amount=1000, amount_refunded=cents, **kwargs)
    response = deliver(event)
    assert response.status_code == 200, response.content
    return {**response.json(), "note": WebhookEvent.objects.get(event_id=event["id"]).last_error}


def refund_rows(account) -> list[Decimal]:
    return [r.balance_delta for r in LedgerEntry.objects.filter(account_id=account.id, transaction_type="refund")
            .order_by("sequence")]


@pytest.fixture
def renewed(stripe_billing, platform, ren):
    """Two paid periods of 100 credits; the renewal's invoice names payment intent pi_renew_2."""
    plan = plan_of(platform)
    pay(ren.account, plan, P1, P2, payment_intent="pi_first_1", billing_reason="subscription_create")
    pay(ren.account, plan, P2, P3, payment_intent="pi_renew_2")
    return plan


@pytest.mark.parametrize("legacy", [False, True])
def test_the_renewal_records_its_payment_intent(stripe_billing, platform, ren, legacy):
    plan = plan_of(platform)
    pay(ren.account, plan, P1, P2, payment_intent="pi_renew_2", legacy=legacy)
    period = PlanCreditPeriod.objects.get()
    assert (period.payment_intent_id, period.amount_paid_usd) == ("pi_renew_2", Decimal("10.00"))


def test_a_partial_then_full_refund_takes_back_the_renewals_share_once(renewed, ren):
    assert refund(250)["status"] == "processed"
    assert refund(250)["status"] == "processed"  # the same cumulative amount again: nothing more
    assert refund(1000)["status"] == "processed"

    assert refund_rows(ren.account) == [Decimal(-25), Decimal(-75)]
    period = PlanCreditPeriod.objects.get(period_start=at(P2))
    assert (period.amount_refunded_usd, period.credits_reversed, period.refund_shortfall_credits) == (
        Decimal("10.00"), Decimal(100), 0)
    first = PlanCreditPeriod.objects.get(period_start=at(P1))
    assert first.credits_reversed == 0
    assert_ledger_invariants(ren.account)


def test_credits_already_spent_are_a_recorded_shortfall(renewed, ren):
    credits_debit(account_id=ren.account.id, amount=Decimal(80))  # 20 left of the renewal's 100
    body = refund(1000)

    assert body["status"] == "processed"
    assert "80.00 of 100.00 credits were already spent" in body["note"]
    assert refund_rows(ren.account) == [Decimal(-20)]
    assert balance(ren.account) == 0
    period = PlanCreditPeriod.objects.get(period_start=at(P2))
    assert (period.credits_reversed, period.refund_shortfall_credits) == (Decimal(20), Decimal(80))
    assert_ledger_invariants(ren.account)


def test_a_legacy_charge_is_matched_by_its_invoice(stripe_billing, platform, ren):
    plan = plan_of(platform)
    pay(ren.account, plan, P1, P2, invoice_id="in_renew_legacy")  # the invoice event named no payment intent
    event = charge_refunded(charge_id="ch_l", payment_intent="pi_unknown", amount=1000, amount_refunded=1000)
    event["data"]["object"]["invoice"] = "in_renew_legacy"
    assert deliver(event).json()["status"] == "processed"
    assert refund_rows(ren.account) == [Decimal(-100)]


def test_an_unmatched_refund_is_parked_with_a_note(renewed, ren):
    body = refund(1000, pi="pi_somebody_else", charge="ch_x")
    assert body["status"] == "parked"
    assert body["note"].startswith("no order or plan period of this service matches")
    assert refund_rows(ren.account) == []


def test_a_refund_before_its_invoice_is_applied_when_the_invoice_arrives(stripe_billing, platform, ren):
    plan = plan_of(platform)
    pay(ren.account, plan, P1, P2)
    early = refund(400)
    assert early["status"] == "parked"

    pay(ren.account, plan, P2, P3, payment_intent="pi_renew_2")

    assert refund_rows(ren.account) == [Decimal(-40)]
    parked = WebhookEvent.objects.get(type="charge.refunded")
    assert parked.status == "processed" and parked.last_error.startswith("applied once its invoice was paid")
    assert PlanCreditPeriod.objects.get(period_start=at(P2)).credits_reversed == Decimal(40)


def test_a_refunded_period_does_not_expire_purchased_credits_at_rollover(renewed, ren, platform):
    refund(1000)  # the renewal's 100 plan credits leave
    credits_grant(account_id=ren.account.id, amount=Decimal(50), description="top-up")

    pay(ren.account, renewed, P3, P3 + 31 * DAY)

    period = PlanCreditPeriod.objects.get(period_start=at(P2))
    assert (period.unused, period.expired) == (0, 0)
    assert balance(ren.account) == Decimal(150)  # 50 purchased + the new period's 100
    assert [t for t, _ in rows(ren.account)].count("rollover") == 1  # only the first period's, at renewal


def test_the_first_invoices_refund_is_the_orders_and_is_recorded_on_its_period(stripe_billing, platform, ren):
    from payments.models import Order

    plan = plan_of(platform)
    order = Order.objects.create(
        platform=platform, account=ren.account, user=ren.user, type="subscription", channel="stripe",
        amount_usd=Decimal("10.00"), credits=plan.credits_included, plan=plan, billing_cycle="monthly",
        success_url="https://app.acme.test/", cancel_url="https://app.acme.test/",
    )
    deliver(invoice_paid(subscription_id="sub_first", price_id=plan.stripe_price_monthly, period_start=P1,
                         period_end=P2, metadata={"order_id": str(order.id), "account_id": str(ren.account.id)},
                         payment_intent="pi_first_1", billing_reason="subscription_create", created=P1 + 10))
    body = refund(1000, pi="pi_first_1", charge="ch_first")

    assert body["status"] == "processed"
    order.refresh_from_db()
    assert (order.status, order.credits_reversed) == ("refunded", Decimal(100))
    period = PlanCreditPeriod.objects.get()
    assert (period.credits_reversed, period.amount_refunded_usd) == (Decimal(100), 0)  # the order kept the amount


# --- a refund after its period has closed (payments.plan_periods: only what it carried out can come back) ----

P4, P5 = T0 + 90 * DAY, T0 + 120 * DAY


def test_a_refund_after_close_takes_back_nothing_that_expired_and_purchased_credits_survive(
    stripe_billing, platform, ren
):
    plan = plan_of(platform)  # 100 credits, rollover none
    pay(ren.account, plan, P1, P2, payment_intent="pi_first_1", billing_reason="subscription_create")
    pay(ren.account, plan, P2, P3, payment_intent="pi_renew_2")
    credits_grant(account_id=ren.account.id, amount=Decimal(100), description="purchased")
    pay(ren.account, plan, P3, P4, payment_intent="pi_renew_3")  # closes P2: its 100 plan credits expire
    assert balance(ren.account) == Decimal(200)  # 100 purchased + P3's 100

    body = refund(1000)  # P2's invoice, refunded in full after P2 closed

    assert body["status"] == "processed"
    assert refund_rows(ren.account) == []  # nothing debited: those credits had already expired
    assert balance(ren.account) == Decimal(200)
    assert "100.00 of 100.00 credits had left with the period's close" in body["note"]
    second = PlanCreditPeriod.objects.get(period_start=at(P2))
    assert (second.amount_refunded_usd, second.credits_reversed, second.refund_expired_credits,
            second.refund_shortfall_credits) == (Decimal("10.00"), 0, Decimal(100), 0)
    assert refund(1000)["note"] == "refund already processed"

    pay(ren.account, plan, P4, P5, payment_intent="pi_renew_4")  # closes P3: only its own 100 expire
    assert balance(ren.account) == Decimal(200)  # the purchased 100 + P4's 100
    third = PlanCreditPeriod.objects.get(period_start=at(P3))
    assert (third.unused, third.expired) == (Decimal(100), Decimal(100))
    assert_ledger_invariants(ren.account)


def test_a_refund_after_close_takes_back_the_carried_credits_once_and_the_next_rollover_counts_it(
    stripe_billing, platform, ren
):
    plan = plan_of(platform, rollover_policy="capped", rollover_cap=Decimal(50))
    pay(ren.account, plan, P1, P2, payment_intent="pi_first_1", billing_reason="subscription_create")
    pay(ren.account, plan, P2, P3, payment_intent="pi_renew_2")
    credits_grant(account_id=ren.account.id, amount=Decimal(100), description="purchased")
    pay(ren.account, plan, P3, P4, payment_intent="pi_renew_3")  # closes P2: 50 carried, 50 expire
    assert balance(ren.account) == Decimal(250)
    assert PlanCreditPeriod.objects.get(period_start=at(P3)).carried_in == Decimal(50)

    assert refund(500)["status"] == "processed"  # half of P2's 100: the 50 it carried out come back
    body = refund(1000)  # the rest: nothing left to take back of P2

    assert refund_rows(ren.account) == [Decimal(-50)]
    assert balance(ren.account) == Decimal(200)
    assert "50.00 of 50.00 credits had left with the period's close" in body["note"]
    second = PlanCreditPeriod.objects.get(period_start=at(P2))
    assert (second.credits_reversed, second.carried_reversed, second.refund_expired_credits) == (
        Decimal(50), Decimal(50), Decimal(50))
    assert PlanCreditPeriod.objects.get(period_start=at(P3)).carried_in == 0

    pay(ren.account, plan, P4, P5, payment_intent="pi_renew_4")  # closes P3: 100 unused, 50 kept
    third = PlanCreditPeriod.objects.get(period_start=at(P3))
    assert (third.unused, third.carried_out, third.expired) == (Decimal(100), Decimal(50), Decimal(50))
    assert balance(ren.account) == Decimal(250)  # purchased 100 + P3's 50 carried + P4's 100
    assert_ledger_invariants(ren.account)


def test_a_refund_after_close_under_rollover_all_takes_the_carried_credits_back_from_the_next_period(
    stripe_billing, platform, ren
):
    plan = plan_of(platform, rollover_policy="all")
    pay(ren.account, plan, P1, P2, payment_intent="pi_first_1", billing_reason="subscription_create")
    pay(ren.account, plan, P2, P3, payment_intent="pi_renew_2")  # P1's 100 carried into P2
    pay(ren.account, plan, P3, P4, payment_intent="pi_renew_3")  # P2 carries out 200
    assert PlanCreditPeriod.objects.get(period_start=at(P3)).carried_in == Decimal(200)

    refund(1000)  # P2 granted 100: all of it is still carried

    assert refund_rows(ren.account) == [Decimal(-100)]
    assert balance(ren.account) == Decimal(200)
    assert PlanCreditPeriod.objects.get(period_start=at(P3)).carried_in == Decimal(100)
    credits_grant(account_id=ren.account.id, amount=Decimal(30), description="purchased")
    pay(ren.account, plan, P4, P5, payment_intent="pi_renew_4")
    assert PlanCreditPeriod.objects.get(period_start=at(P4)).carried_in == Decimal(200)  # not 230
    assert balance(ren.account) == Decimal(330)
    assert_ledger_invariants(ren.account)


def test_the_first_invoices_refund_after_its_period_closed_takes_back_nothing_that_expired(
    stripe_billing, platform, ren
):
    from payments.models import Order

    plan = plan_of(platform)  # rollover none
    order = Order.objects.create(
        platform=platform, account=ren.account, user=ren.user, type="subscription", channel="stripe",
        amount_usd=Decimal("10.00"), credits=plan.credits_included, plan=plan, billing_cycle="monthly",
        success_url="https://app.acme.test/", cancel_url="https://app.acme.test/",
    )
    deliver(invoice_paid(subscription_id="sub_first", price_id=plan.stripe_price_monthly, period_start=P1,
                         period_end=P2, metadata={"order_id": str(order.id), "account_id": str(ren.account.id)},
                         payment_intent="pi_first_1", billing_reason="subscription_create", created=P1 + 10))
    pay(ren.account, plan, P2, P3, sub="sub_first", payment_intent="pi_renew_2")  # P1's 100 expire
    credits_grant(account_id=ren.account.id, amount=Decimal(100), description="purchased")

    assert refund(500, pi="pi_first_1", charge="ch_first")["status"] == "processed"
    body = refund(1000, pi="pi_first_1", charge="ch_first")

    assert refund_rows(ren.account) == []
    assert balance(ren.account) == Decimal(200)
    assert "50.00 of 50.00 credits had left with the first period's close" in body["note"]
    order.refresh_from_db()
    assert (order.status, order.credits_reversed, order.refund_shortfall_credits, order.needs_review) == (
        "refunded", 0, 0, False)
    first = PlanCreditPeriod.objects.get(period_start=at(P1))
    assert (first.credits_reversed, first.refund_expired_credits) == (0, Decimal(100))

    pay(ren.account, plan, P3, P4, sub="sub_first", payment_intent="pi_renew_3")
    assert balance(ren.account) == Decimal(200)  # the purchased 100 survive the next rollover
    assert_ledger_invariants(ren.account)


# --- invoice_payment.paid: the payment intent a current-version invoice event leaves out ----------------------


def invoice_payment_paid(invoice_id: str, payment_intent: str, *, status: str = "paid") -> dict:
    return stripe_subscriptions._event("invoice_payment.paid", {
        "id": stripe_subscriptions.next_id("inpay"), "object": "invoice_payment", "invoice": invoice_id,
        "amount_paid": 1000, "amount_requested": 1000, "currency": "usd", "status": status, "is_default": True,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
    }, created=None, event_id=None)


@pytest.mark.parametrize("payment_first", [False, True])
def test_invoice_payment_paid_names_the_renewals_payment_intent(stripe_billing, platform, ren, payment_first):
    plan = plan_of(platform)
    pay(ren.account, plan, P1, P2, payment_intent="pi_first_1", billing_reason="subscription_create")
    payment = invoice_payment_paid("in_renew_2", "pi_renew_2")
    if payment_first:
        assert deliver(payment).json()["status"] == "ignored"  # no period yet: invoice.paid reads it
    pay(ren.account, plan, P2, P3, invoice_id="in_renew_2")  # the invoice event names no payment intent
    if not payment_first:
        assert deliver(payment).json()["status"] == "processed"

    period = PlanCreditPeriod.objects.get(period_start=at(P2))
    assert period.payment_intent_id == "pi_renew_2"
    assert refund(500)["status"] == "processed"
    assert refund_rows(ren.account) == [Decimal(-50)]
    assert deliver(payment).json()["duplicate"] is True


def test_a_refund_parked_before_invoice_payment_paid_is_applied_by_it(stripe_billing, platform, ren):
    plan = plan_of(platform)
    pay(ren.account, plan, P1, P2, payment_intent="pi_first_1", billing_reason="subscription_create")
    pay(ren.account, plan, P2, P3, invoice_id="in_renew_2")
    assert refund(1000)["status"] == "parked"  # no period knows pi_renew_2 yet

    assert deliver(invoice_payment_paid("in_renew_2", "pi_renew_2")).json()["status"] == "processed"

    assert refund_rows(ren.account) == [Decimal(-100)]
    assert WebhookEvent.objects.get(type="charge.refunded").status == "processed"


@pytest.mark.parametrize("status", ["open", "canceled"])
def test_an_invoice_payment_that_is_not_paid_records_nothing(stripe_billing, platform, ren, status):
    plan = plan_of(platform)
    pay(ren.account, plan, P1, P2, invoice_id="in_renew_1")
    assert deliver(invoice_payment_paid("in_renew_1", "pi_x", status=status)).json()["status"] == "ignored"
    assert PlanCreditPeriod.objects.get().payment_intent_id == ""


@pytest.mark.parametrize("payment_first", [False, True])
def test_the_first_invoices_payment_reaches_its_order_whatever_the_order_of_events(
    stripe_billing, platform, ren, payment_first
):
    """The first invoice's refunds are its order's, whether invoice_payment.paid came before or after invoice.paid;
    and credits taken back through the period and then through the order are never taken twice."""
    from payments.models import Order

    plan = plan_of(platform)
    order = Order.objects.create(
        platform=platform, account=ren.account, user=ren.user, type="subscription", channel="stripe",
        amount_usd=Decimal("10.00"), credits=plan.credits_included, plan=plan, billing_cycle="monthly",
        success_url="https://app.acme.test/", cancel_url="https://app.acme.test/",
    )
    first = dict(subscription_id="sub_first", price_id=plan.stripe_price_monthly, period_start=P1, period_end=P2,
                 metadata={"order_id": str(order.id), "account_id": str(ren.account.id)}, invoice_id="in_first",
                 billing_reason="subscription_create", created=P1 + 10)
    payment = invoice_payment_paid("in_first", "pi_first_1")
    if payment_first:
        deliver(payment)
    deliver(invoice_paid(**first))
    if not payment_first:
        deliver(payment)
    credits_grant(account_id=ren.account.id, amount=Decimal(200), description="purchased")

    refund(500, pi="pi_first_1", charge="ch_first")
    again = invoice_paid(**first)
    again["type"] = "invoice.payment_succeeded"
    deliver(again)
    refund(1000, pi="pi_first_1", charge="ch_first")

    order.refresh_from_db()
    assert (order.provider_payment_id, order.status) == ("pi_first_1", "refunded")
    assert refund_rows(ren.account) == [Decimal(-50), Decimal(-50)]  # the grant's 100, once
    assert balance(ren.account) == Decimal(200)  # the purchased credits stay
    assert PlanCreditPeriod.objects.get().credits_reversed == Decimal(100)
    assert_ledger_invariants(ren.account)
