"""Creem renewals apply the plan's rollover policy as Stripe's invoice.paid does (the same
``plan_periods.period_grant``): each paid period is a PlanCreditPeriod; the previous one's unused plan credits are
kept (none, all, up to the cap) or leave in one ``rollover`` row; purchased credits never expire."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from credits.models import CreditAccount, LedgerEntry
from credits.services import credits_debit, credits_grant
from payments.models import Order, PlanCreditPeriod, WebhookEvent
from subscriptions.models import Subscription
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.payments.creem_support import (
    PERIOD_1,
    PERIOD_2,
    PERIOD_3,
    checkout_completed,
    creem_plan,
    deliver,
    refund_created,
    start_subscription_checkout,
    subscription_event,
    subscription_object,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(platform):
    from tests.conftest import make_member

    return make_member(platform, "cleo")


def subscribe(member, **plan_fields):
    """A Creem subscription on a 500-credit plan whose first period (PERIOD_1) is paid."""
    plan = creem_plan(member.platform, **plan_fields)
    order = start_subscription_checkout(member, plan)
    assert deliver(checkout_completed(order, created=PERIOD_1)).status_code == 200
    paid(order, PERIOD_1)
    return plan, order


def paid(order, start, **fields):
    response = deliver(subscription_event("subscription.paid", order, period_start=start,
                                          created=start + timedelta(seconds=5), **fields))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "processed", response.json()
    return response


def kinds(member) -> list[tuple[str, Decimal]]:
    return [(r.transaction_type, r.balance_delta)
            for r in LedgerEntry.objects.filter(account_id=member.account.id).order_by("sequence")]


def available(member) -> Decimal:
    return CreditAccount.objects.get(pk=member.account.id).available


def test_a_renewal_expires_the_unused_plan_credits_under_rollover_none(fake_creem, member):
    _plan, order = subscribe(member)
    credits_debit(account_id=member.account.id, amount=Decimal(200))

    renewal = subscription_event("subscription.paid", order, period_start=PERIOD_2,
                                 created=PERIOD_2 + timedelta(seconds=5))
    assert deliver(renewal).json()["status"] == "processed"
    assert deliver(renewal).json()["duplicate"] is True
    paid(order, PERIOD_2)  # the same period paid again (another event): nothing more

    assert kinds(member) == [("add", Decimal(500)), ("subtract", Decimal(-200)), ("rollover", Decimal(-300)),
                             ("add", Decimal(500))]
    subscription = Subscription.objects.get()
    rollover = LedgerEntry.objects.get(account_id=member.account.id, transaction_type="rollover")
    assert rollover.idempotency_key == f"rollover:{subscription.pk}:{int(PERIOD_1.timestamp())}"
    first, second = PlanCreditPeriod.objects.order_by("period_start")
    assert (first.unused, first.carried_out, first.expired) == (Decimal(300), 0, Decimal(300))
    assert first.closed_at is not None and second.closed_at is None and second.carried_in == 0
    # The grants keep Creem's own ledger keys.
    assert second.grant_entry.idempotency_key == "creem:sub_test_1:2026-11-12T11:58:38+00:00"
    assert available(member) == Decimal(500)
    assert_ledger_invariants(member.account)


def test_rollover_capped_keeps_up_to_the_cap_and_carries_it(fake_creem, member):
    _plan, order = subscribe(member, rollover_policy="capped", rollover_cap=Decimal(100))
    paid(order, PERIOD_2)
    paid(order, PERIOD_3)

    assert [d for t, d in kinds(member) if t == "rollover"] == [Decimal(-400), Decimal(-500)]
    assert [p.carried_in for p in PlanCreditPeriod.objects.order_by("period_start")] == [0, 100, 100]
    assert available(member) == Decimal(600)


def test_rollover_all_keeps_everything(fake_creem, member):
    _plan, order = subscribe(member, rollover_policy="all")
    credits_debit(account_id=member.account.id, amount=Decimal(100))
    paid(order, PERIOD_2)

    assert [t for t, _ in kinds(member)].count("rollover") == 0
    assert PlanCreditPeriod.objects.get(period_start=PERIOD_2).carried_in == Decimal(400)
    assert available(member) == Decimal(900)


def test_purchased_credits_never_expire(fake_creem, member):
    _plan, order = subscribe(member)
    credits_grant(account_id=member.account.id, amount=Decimal(70), description="top-up")
    paid(order, PERIOD_2)
    assert available(member) == Decimal(570)


def test_a_refunded_period_expires_nothing_purchased(fake_creem, member):
    _plan, order = subscribe(member)
    assert deliver(refund_created(order)).json()["status"] == "processed"  # the first period's 500 leave
    credits_grant(account_id=member.account.id, amount=Decimal(70), description="top-up")

    paid(order, PERIOD_2)

    first = PlanCreditPeriod.objects.get(period_start=PERIOD_1)
    assert (first.credits_reversed, first.unused, first.expired) == (Decimal(500), 0, 0)
    assert available(member) == Decimal(570)


def test_a_period_without_an_end_date_lasts_one_billing_cycle(fake_creem, member):
    _plan, order = subscribe(member)
    obj = subscription_object(order, period_start=PERIOD_2)
    obj.pop("current_period_end_date")
    event = {"id": "evt_creem_no_end", "eventType": "subscription.paid",
             "created_at": int((PERIOD_2 + timedelta(seconds=5)).timestamp() * 1000), "object": obj}
    assert deliver(event).json()["status"] == "processed"
    period = PlanCreditPeriod.objects.get(period_start=PERIOD_2)
    assert period.period_end == PERIOD_2.replace(month=12)


def test_a_refund_after_its_period_closed_takes_back_only_what_it_carried(fake_creem, member):
    """payments.plan_periods: a closed period's expired credits are not taken out of the next period's or
    purchased ones; what it carried out is taken back once and leaves the next period's carried_in."""
    _plan, order = subscribe(member, rollover_policy="capped", rollover_cap=Decimal(100))
    paid(order, PERIOD_2)  # closes PERIOD_1: 100 carried, 400 expire
    credits_grant(account_id=member.account.id, amount=Decimal(70), description="top-up")
    assert available(member) == Decimal(670)

    response = deliver(refund_created(order, period_start=PERIOD_1))  # PERIOD_1's payment, refunded in full

    assert response.json()["status"] == "processed"
    assert [d for t, d in kinds(member) if t == "refund"] == [Decimal(-100)]
    assert available(member) == Decimal(570)
    first, second = PlanCreditPeriod.objects.order_by("period_start")
    assert (first.credits_reversed, first.carried_reversed, first.refund_expired_credits) == (
        Decimal(100), Decimal(100), Decimal(400))
    assert second.carried_in == 0

    paid(order, PERIOD_3)  # closes PERIOD_2: its own 500, 100 kept; the top-up survives
    assert PlanCreditPeriod.objects.get(period_start=PERIOD_2).unused == Decimal(500)
    assert available(member) == Decimal(670)  # 70 purchased + 100 carried + PERIOD_3's 500
    assert_ledger_invariants(member.account)


def test_the_same_refund_under_a_second_event_id_after_the_close_counts_once(fake_creem, member):
    """A refund of a closed period that takes nothing back writes no ledger row: it is deduplicated on the Creem
    refund id itself, or a second delivery (another event id) would count the expired credits and the refunded
    amount twice."""
    _plan, order = subscribe(member)  # rollover none
    paid(order, PERIOD_2)  # closes PERIOD_1: its 500 credits expire
    rows = kinds(member)
    answers = [
        deliver(refund_created(order, period_start=PERIOD_1, refund_amount=1000, refund_id="ref_same",
                               event_id=event_id)).json()
        for event_id in ("evt_refund_a", "evt_refund_b")
    ]
    assert [a["status"] for a in answers] == ["processed", "processed"]
    assert "already processed" in WebhookEvent.objects.get(event_id="evt_refund_b").last_error
    first = PlanCreditPeriod.objects.order_by("period_start").first()
    assert (first.refund_expired_credits, first.credits_reversed) == (Decimal(250), Decimal(0))
    stored = Order.objects.get(pk=order["id"])
    assert (stored.amount_refunded_usd, stored.credits_reversed) == (Decimal(10), Decimal(0))
    assert kinds(member) == rows  # nothing to take back: no ledger row either time
    assert_ledger_invariants(member.account)
