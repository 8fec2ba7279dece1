"""invoice.paid (plan credits per period, rollover) and customer.subscription.* (status, plan, period)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from credits.models import LedgerEntry
from credits.services import credits_debit, credits_grant
from payments.models import PlanCreditPeriod, WebhookEvent
from subscriptions.models import Subscription
from tests.conftest import make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.payments import stripe_subscriptions
from tests.payments.conftest import deliver
from tests.payments.stripe_subscriptions import (
    DAY,
    T0,
    invoice_paid,
    subscription_event,
)
from tests.subscriptions.conftest import make_plan

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe fixture

pytestmark = pytest.mark.django_db

P1, P2, P3, P4 = T0, T0 + 31 * DAY, T0 + 59 * DAY, T0 + 90 * DAY


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@pytest.fixture
def sam(platform):
    return make_member(platform, "sam")


def plan_of(platform, slug="pro", **fields):
    values = {
        "credits_included": Decimal(100),
        "stripe_price_monthly": f"price_{slug}_m",
        "stripe_price_yearly": f"price_{slug}_y",
    } | fields
    return make_plan(platform, slug, **values)


def pay(account, plan, start: int, end: int, *, sub: str = "sub_test_w", **kwargs):
    event = invoice_paid(
        subscription_id=sub,
        price_id=plan.stripe_price_monthly,
        period_start=start,
        period_end=end,
        metadata={"account_id": str(account.id)},
        created=end - DAY,
        **kwargs,
    )
    response = deliver(event)
    assert response.status_code == 200, response.content
    return response.json()


def rows(account) -> list[tuple[str, Decimal]]:
    return [
        (r.transaction_type, r.balance_delta)
        for r in LedgerEntry.objects.filter(account_id=account.id).order_by("sequence")
    ]


def balance(account) -> Decimal:
    account.refresh_from_db()
    return account.balance


# --- invoice.paid --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_first_invoice_starts_the_subscription_and_grants_the_plan_credits_once(
    stripe_billing, platform, sam, legacy
):
    plan = plan_of(platform)
    event = invoice_paid(
        subscription_id="sub_test_w",
        price_id="price_pro_m",
        period_start=P1,
        period_end=P2,
        metadata={"account_id": str(sam.account.id)},
        created=P1 + 60,
        legacy=legacy,
        billing_reason="subscription_create",
    )

    assert deliver(event).json()["status"] == "processed"
    assert deliver(event).json()["duplicate"] is True
    # The same period paid again through another event (e.g. a retried invoice) grants nothing more.
    again = invoice_paid(
        subscription_id="sub_test_w",
        price_id="price_pro_m",
        period_start=P1,
        period_end=P2,
        metadata={"account_id": str(sam.account.id)},
        created=P1 + 120,
        legacy=legacy,
    )
    assert deliver(again).json()["status"] == "processed"

    assert rows(sam.account) == [("add", Decimal(100))]
    entry = LedgerEntry.objects.get(account_id=sam.account.id)
    subscription = Subscription.objects.get()
    assert entry.idempotency_key == f"period:{subscription.pk}:{P1}"
    assert (subscription.plan_id, subscription.status, subscription.provider_subscription_id) == (
        plan.pk,
        "active",
        "sub_test_w",
    )
    assert (subscription.current_period_start, subscription.current_period_end) == (at(P1), at(P2))
    period = PlanCreditPeriod.objects.get()
    assert (period.granted, period.carried_in, period.grant_entry_id) == (Decimal(100), 0, entry.pk)
    assert_ledger_invariants(sam.account)


def test_an_invoice_naming_no_account_of_ours_is_ignored(stripe_billing, platform):
    plan_of(platform)
    event = invoice_paid(
        subscription_id="sub_foreign", price_id="price_pro_m", period_start=P1, period_end=P2, metadata={}
    )
    assert deliver(event).json()["status"] == "ignored"
    assert LedgerEntry.objects.filter(reference__startswith="subscription:").count() == 0


def test_an_invoice_for_an_unknown_price_is_refused(stripe_billing, platform, sam):
    event = invoice_paid(
        subscription_id="sub_x",
        price_id="price_nobody",
        period_start=P1,
        period_end=P2,
        metadata={"account_id": str(sam.account.id)},
    )
    assert deliver(event).json()["status"] == "failed"
    assert Subscription.objects.count() == 0 and rows(sam.account) == []


def test_rollover_none_removes_unused_plan_credits_but_never_purchased_ones(stripe_billing, platform, sam):
    plan = plan_of(platform)  # rollover: none
    pay(sam.account, plan, P1, P2)
    credits_grant(account_id=sam.account.id, amount=Decimal(50), description="top-up")
    credits_debit(account_id=sam.account.id, amount=Decimal(30))  # plan credits are spent first

    pay(sam.account, plan, P2, P3)

    assert rows(sam.account) == [
        ("add", Decimal(100)),
        ("add", Decimal(50)),
        ("subtract", Decimal(-30)),
        ("rollover", Decimal(-70)),
        ("add", Decimal(100)),
    ]
    assert balance(sam.account) == Decimal(150)  # 50 purchased + 100 of the new period
    first = PlanCreditPeriod.objects.get(period_start=at(P1))
    assert (first.unused, first.carried_out, first.expired) == (Decimal(70), 0, Decimal(70))
    assert first.closed_at is not None and first.rollover_entry.transaction_type == "rollover"
    assert PlanCreditPeriod.objects.get(period_start=at(P2)).carried_in == 0
    assert_ledger_invariants(sam.account)


def test_spending_past_the_plan_credits_leaves_nothing_to_expire(stripe_billing, platform, sam):
    plan = plan_of(platform)
    pay(sam.account, plan, P1, P2)
    credits_grant(account_id=sam.account.id, amount=Decimal(50))
    credits_debit(account_id=sam.account.id, amount=Decimal(120))

    pay(sam.account, plan, P2, P3)

    assert [t for t, _ in rows(sam.account)].count("rollover") == 0
    assert balance(sam.account) == Decimal(130)  # the 30 purchased credits left, and the new 100


def test_rollover_all_keeps_everything_and_carries_it_forward(stripe_billing, platform, sam):
    plan = plan_of(platform, rollover_policy="all")
    pay(sam.account, plan, P1, P2)
    credits_debit(account_id=sam.account.id, amount=Decimal(30))
    pay(sam.account, plan, P2, P3)
    pay(sam.account, plan, P3, P4)

    assert [t for t, _ in rows(sam.account)].count("rollover") == 0
    assert balance(sam.account) == Decimal(270)
    periods = list(PlanCreditPeriod.objects.order_by("period_start"))
    assert [p.carried_in for p in periods] == [0, Decimal(70), Decimal(170)]


def test_rollover_capped_keeps_up_to_the_cap(stripe_billing, platform, sam):
    plan = plan_of(platform, rollover_policy="capped", rollover_cap=Decimal(50))
    pay(sam.account, plan, P1, P2)
    credits_debit(account_id=sam.account.id, amount=Decimal(30))
    pay(sam.account, plan, P2, P3)
    # Nothing spent in the second period: 100 granted + 50 carried are unused; 50 stay.
    pay(sam.account, plan, P3, P4)

    assert [(t, d) for t, d in rows(sam.account) if t == "rollover"] == [
        ("rollover", Decimal(-20)),
        ("rollover", Decimal(-100)),
    ]
    assert balance(sam.account) == Decimal(150)
    assert [p.carried_in for p in PlanCreditPeriod.objects.order_by("period_start")] == [0, 50, 50]
    assert_ledger_invariants(sam.account)


def test_reserved_credits_are_never_expired(stripe_billing, platform, sam):
    from credits.services import hold_create

    plan = plan_of(platform)
    pay(sam.account, plan, P1, P2)
    hold_create(account_id=sam.account.id, amount=Decimal(80))

    pay(sam.account, plan, P2, P3)

    assert [(t, d) for t, d in rows(sam.account) if t == "rollover"] == [("rollover", Decimal(-20))]
    sam.account.refresh_from_db()
    assert (sam.account.balance, sam.account.reserved) == (Decimal(180), Decimal(80))


def test_a_plan_without_credits_records_the_period_and_writes_no_row(stripe_billing, platform, sam):
    plan = plan_of(platform, "unlimited", credits_included=Decimal(0), unlimited_credits=True)
    pay(sam.account, plan, P1, P2)

    assert rows(sam.account) == []
    period = PlanCreditPeriod.objects.get()
    assert (period.granted, period.grant_entry_id) == (0, None)


def test_each_period_uses_the_plan_its_invoice_paid_for(stripe_billing, platform, sam):
    pro, max_plan = plan_of(platform), plan_of(platform, "max", credits_included=Decimal(500))
    pay(sam.account, pro, P1, P2)
    pay(sam.account, max_plan, P2, P3)

    assert rows(sam.account) == [("add", Decimal(100)), ("rollover", Decimal(-100)), ("add", Decimal(500))]


# --- customer.subscription.* ---------------------------------------------------------------------------------


def sub_event(kind: str, plan, account, created: int, **kwargs):
    return subscription_event(
        kind,
        subscription_id="sub_test_s",
        price_id=plan.stripe_price_monthly,
        metadata={"account_id": str(account.id)},
        created=created,
        **kwargs,
    )


def test_subscription_created_starts_it_with_its_period_and_trial(stripe_billing, platform, sam):
    plan = plan_of(platform)
    assert (
        deliver(
            sub_event("created", plan, sam.account, P1, status="trialing", trial_end=P1 + 14 * DAY)
        ).json()["status"]
        == "processed"
    )

    subscription = Subscription.objects.get()
    assert (subscription.status, subscription.trial_end, subscription.current_period_start) == (
        "trialing",
        at(P1 + 14 * DAY),
        at(P1),
    )
    assert subscription.synced_at == at(P1)


def test_subscription_updated_changes_plan_status_and_cancellation(stripe_billing, platform, sam):
    pro, max_plan = plan_of(platform), plan_of(platform, "max")
    deliver(sub_event("created", pro, sam.account, P1))

    deliver(
        sub_event(
            "updated",
            max_plan,
            sam.account,
            P1 + 100,
            status="past_due",
            cancel_at_period_end=True,
            period_start=P2,
            period_end=P3,
        )
    )

    subscription = Subscription.objects.get()
    assert (subscription.plan_id, subscription.previous_plan_id, subscription.status) == (
        max_plan.pk,
        pro.pk,
        "past_due",
    )
    assert subscription.cancel_at_period_end is True
    assert (subscription.current_period_start, subscription.current_period_end) == (at(P2), at(P3))


@pytest.mark.parametrize(
    ("stripe_status", "ours"),
    [("unpaid", "past_due"), ("paused", "past_due"), ("active", "active"), ("trialing", "trialing")],
)
def test_stripe_statuses_map_to_ours(stripe_billing, platform, sam, stripe_status, ours):
    plan = plan_of(platform)
    deliver(sub_event("created", plan, sam.account, P1))
    deliver(sub_event("updated", plan, sam.account, P1 + 10, status=stripe_status))
    assert Subscription.objects.get().status == ours


def test_an_older_event_never_overrides_a_newer_one(stripe_billing, platform, sam):
    pro, max_plan = plan_of(platform), plan_of(platform, "max")
    deliver(sub_event("updated", max_plan, sam.account, P1 + 200, cancel_at_period_end=True))
    late = deliver(sub_event("updated", pro, sam.account, P1 + 100, status="past_due"))

    assert late.json()["status"] == "processed"
    subscription = Subscription.objects.get()
    assert (subscription.plan_id, subscription.status, subscription.cancel_at_period_end) == (
        max_plan.pk,
        "active",
        True,
    )
    assert subscription.synced_at == at(P1 + 200)


def test_deleted_cancels_and_later_updates_change_nothing(stripe_billing, platform, sam):
    plan = plan_of(platform)
    deliver(sub_event("created", plan, sam.account, P1))
    deliver(sub_event("deleted", plan, sam.account, P1 + 100, status="canceled", canceled_at=P1 + 90))
    response = deliver(sub_event("updated", plan, sam.account, P1 + 200, status="active"))

    assert response.json()["status"] == "processed"
    subscription = Subscription.objects.get()
    assert (subscription.status, subscription.canceled_at) == ("canceled", at(P1 + 90))
    assert subscription.ended_at is not None
    assert WebhookEvent.objects.filter(status="processed").count() == 3


def test_incomplete_subscriptions_are_not_started(stripe_billing, platform, sam):
    plan = plan_of(platform)
    response = deliver(sub_event("created", plan, sam.account, P1, status="incomplete"))
    assert response.json()["status"] == "processed"
    assert Subscription.objects.count() == 0


def test_incomplete_expired_expires(stripe_billing, platform, sam):
    plan = plan_of(platform)
    deliver(sub_event("created", plan, sam.account, P1))
    deliver(sub_event("updated", plan, sam.account, P1 + 5, status="incomplete_expired"))
    assert Subscription.objects.get().status == "expired"
