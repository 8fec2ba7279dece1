"""Mid-period plan changes (customer.subscription.updated): an upgrade tops the current period up to the new plan's
credits once, recorded on its PlanCreditPeriod so the rollover counts it; a downgrade grants nothing; an older
event never grants; arrival order (upgrade before or after the period's invoice) does not change the end. The
invoice of a mid-period change (prorations only) starts no period."""

from __future__ import annotations

from decimal import Decimal

import pytest

from credits.models import LedgerEntry
from credits.services import credits_debit
from payments.models import PlanCreditPeriod, WebhookEvent
from subscriptions.models import Subscription
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.payments import stripe_subscriptions
from tests.payments.conftest import deliver
from tests.payments.stripe_subscriptions import DAY, T0, invoice_paid, subscription_event
from tests.payments.test_subscription_webhooks import at, balance, pay, plan_of, rows

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe fixture

pytestmark = pytest.mark.django_db

P1, P2, P3 = T0, T0 + 31 * DAY, T0 + 59 * DAY
SUB = "sub_test_w"  # the subscription ``pay`` pays
LATER = P2 - DAY  # ``pay`` dates its invoice event a day before the period ends: changes come after it


@pytest.fixture
def sam(platform):
    from tests.conftest import make_member

    return make_member(platform, "sam")


@pytest.fixture
def plans(platform):
    return plan_of(platform), plan_of(platform, "max", credits_included=Decimal(500))


def change(plan, account, created: int, *, start: int = P1, end: int = P2, status: str = "active", event_id=None):
    event = subscription_event(
        "updated", subscription_id=SUB, price_id=plan.stripe_price_monthly, status=status, period_start=start,
        period_end=end, metadata={"account_id": str(account.id)}, created=created, event_id=event_id,
    )
    response = deliver(event)
    assert response.status_code == 200, response.content
    return event, response.json()


def upgrades(account) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account_id=account.id, idempotency_key__startswith="upgrade:")
                .order_by("sequence"))


def test_an_upgrade_grants_the_difference_for_the_current_period_once(stripe_billing, sam, plans):
    pro, max_plan = plans
    pay(sam.account, pro, P1, P2)  # invoice created at P2 - DAY
    subscription = Subscription.objects.get()

    event, body = change(max_plan, sam.account, P2 - DAY + 10)
    assert body["status"] == "processed"
    assert deliver(event).json()["duplicate"] is True
    change(max_plan, sam.account, P2 - DAY + 20)  # a later event, same state: nothing more

    assert rows(sam.account) == [("add", Decimal(100)), ("add", Decimal(400))]
    [entry] = upgrades(sam.account)
    assert entry.idempotency_key == f"upgrade:{subscription.pk}:{P1}:{max_plan.pk}"
    assert (entry.metadata["from_plan"], entry.metadata["plan"]) == ("pro", "max")
    period = PlanCreditPeriod.objects.get()
    assert (period.granted, period.upgrade_granted, period.plan_id) == (Decimal(100), Decimal(400), max_plan.pk)
    assert "upgrade: 400" in WebhookEvent.objects.get(event_id=event["id"]).last_error
    assert_ledger_invariants(sam.account)


def test_the_rollover_counts_the_upgrade_credits(stripe_billing, sam, plans):
    pro, max_plan = plans
    pay(sam.account, pro, P1, P2)
    change(max_plan, sam.account, P2 - DAY + 10)
    credits_debit(account_id=sam.account.id, amount=Decimal(150))

    pay(sam.account, max_plan, P2, P3)  # max's rollover policy: none

    assert rows(sam.account)[-2:] == [("rollover", Decimal(-350)), ("add", Decimal(500))]
    first = PlanCreditPeriod.objects.get(period_start=at(P1))
    assert (first.unused, first.expired) == (Decimal(350), Decimal(350))
    assert balance(sam.account) == Decimal(500)


def test_the_upgraded_period_follows_the_new_plans_rollover_policy(stripe_billing, platform, sam):
    pro = plan_of(platform)
    keeper = plan_of(platform, "keeper", credits_included=Decimal(300), rollover_policy="all")
    pay(sam.account, pro, P1, P2)
    change(keeper, sam.account, P2 - DAY + 10)
    pay(sam.account, keeper, P2, P3)

    assert [t for t, _ in rows(sam.account)].count("rollover") == 0
    assert PlanCreditPeriod.objects.get(period_start=at(P2)).carried_in == Decimal(300)


def test_a_downgrade_grants_nothing_now_and_the_next_invoice_brings_the_new_plan(stripe_billing, sam, plans):
    pro, max_plan = plans
    pay(sam.account, max_plan, P1, P2)
    change(pro, sam.account, P2 - DAY + 10)
    assert rows(sam.account) == [("add", Decimal(500))]
    assert Subscription.objects.get().plan_id == pro.pk

    pay(sam.account, pro, P2, P3)
    assert rows(sam.account) == [("add", Decimal(500)), ("rollover", Decimal(-500)), ("add", Decimal(100))]
    assert upgrades(sam.account) == []


def test_up_down_and_up_again_grants_the_difference_once(stripe_billing, platform, sam, plans):
    pro, max_plan = plans
    ultra = plan_of(platform, "ultra", credits_included=Decimal(800))
    pay(sam.account, pro, P1, P2)
    change(max_plan, sam.account, LATER + 10)
    change(pro, sam.account, LATER + 20)
    change(max_plan, sam.account, LATER + 30)
    change(ultra, sam.account, LATER + 40)

    assert [e.balance_delta for e in upgrades(sam.account)] == [Decimal(400), Decimal(300)]
    period = PlanCreditPeriod.objects.get()
    assert (period.upgrade_granted, period.plan_id) == (Decimal(700), ultra.pk)


def test_an_older_upgrade_arriving_after_a_newer_downgrade_grants_nothing(stripe_billing, sam, plans):
    pro, max_plan = plans
    pay(sam.account, pro, P1, P2)
    change(pro, sam.account, LATER + 200)  # the newest state: pro
    _late, body = change(max_plan, sam.account, LATER + 100)  # the upgrade that the state above undid

    assert body["status"] == "processed"
    assert upgrades(sam.account) == []
    assert Subscription.objects.get().plan_id == pro.pk
    assert PlanCreditPeriod.objects.get().upgrade_granted == 0


def test_an_upgrade_seen_before_its_periods_invoice_is_granted_with_the_invoice(stripe_billing, sam, plans):
    pro, max_plan = plans
    pay(sam.account, pro, P1, P2)
    # Renewal: the subscription moves to P2 and is upgraded before the P2 invoice (billed at pro) arrives.
    change(max_plan, sam.account, P2 + 100, start=P2, end=P3)
    assert upgrades(sam.account) == []  # no period to top up yet

    deliver(invoice_paid(subscription_id=SUB, price_id=pro.stripe_price_monthly, period_start=P2, period_end=P3,
                         metadata={"account_id": str(sam.account.id)}, created=P2 + 50))

    second = PlanCreditPeriod.objects.get(period_start=at(P2))
    assert (second.granted, second.upgrade_granted, second.plan_id) == (Decimal(100), Decimal(400), max_plan.pk)
    assert [e.balance_delta for e in upgrades(sam.account)] == [Decimal(400)]


def test_either_arrival_order_ends_the_same(stripe_billing, platform, plans):
    from tests.conftest import make_member

    pro, max_plan = plans
    ends = []
    for name, upgrade_first in (("ann", True), ("bob", False)):
        member = make_member(platform, name)
        sub = f"sub_{name}"
        invoice = invoice_paid(subscription_id=sub, price_id=pro.stripe_price_monthly, period_start=P1,
                               period_end=P2, metadata={"account_id": str(member.account.id)}, created=P1 + 5)
        upgrade = subscription_event("updated", subscription_id=sub, price_id=max_plan.stripe_price_monthly,
                                     period_start=P1, period_end=P2,
                                     metadata={"account_id": str(member.account.id)}, created=P1 + 100)
        for event in (upgrade, invoice) if upgrade_first else (invoice, upgrade):
            assert deliver(event).status_code == 200
        period = PlanCreditPeriod.objects.get(subscription__provider_subscription_id=sub)
        ends.append((balance(member.account), period.granted, period.upgrade_granted, period.plan_id))
    assert ends[0] == ends[1] == (Decimal(500), Decimal(100), Decimal(400), max_plan.pk)


def test_a_past_due_subscription_is_topped_up_once_active_again(stripe_billing, sam, plans):
    pro, max_plan = plans
    pay(sam.account, pro, P1, P2)
    change(max_plan, sam.account, LATER + 10, status="past_due")
    assert upgrades(sam.account) == []
    change(max_plan, sam.account, LATER + 20, status="active")
    assert [e.balance_delta for e in upgrades(sam.account)] == [Decimal(400)]


def test_the_proration_invoice_of_a_change_starts_no_period(stripe_billing, sam, plans):
    pro, max_plan = plans
    pay(sam.account, pro, P1, P2)
    change(max_plan, sam.account, LATER + 10)
    event = invoice_paid(subscription_id=SUB, price_id=pro.stripe_price_monthly, period_start=LATER + 10,
                         period_end=P2, metadata={"account_id": str(sam.account.id)}, amount_paid=2580,
                         billing_reason="subscription_update", created=LATER + 15)
    for line in event["data"]["object"]["lines"]["data"]:
        line["parent"]["subscription_item_details"] = {"subscription": SUB, "proration": True}

    assert deliver(event).json()["status"] == "ignored"
    assert PlanCreditPeriod.objects.count() == 1
    assert rows(sam.account) == [("add", Decimal(100)), ("add", Decimal(400))]


def test_a_subscription_update_invoice_with_a_new_period_still_grants(stripe_billing, sam, plans):
    """Another interval restarts the cycle: that invoice's subscription line is no proration."""
    pro, max_plan = plans
    pay(sam.account, pro, P1, P2)
    event = invoice_paid(subscription_id=SUB, price_id=max_plan.stripe_price_monthly, period_start=P1 + 5 * DAY,
                         period_end=P1 + 370 * DAY, metadata={"account_id": str(sam.account.id)},
                         billing_reason="subscription_update", created=P1 + 5 * DAY + 5)
    for line in event["data"]["object"]["lines"]["data"]:
        line["parent"]["subscription_item_details"] = {"subscription": SUB, "proration": False}
    assert deliver(event).json()["status"] == "processed"
    assert PlanCreditPeriod.objects.count() == 2


def test_a_change_invoice_with_prorations_and_a_one_off_item_starts_no_period(stripe_billing, sam, plans):
    """A one-off invoice item beside the prorations is no subscription line: no period starts mid-cycle from
    a proration line, nothing is closed or granted again."""
    pro, _max_plan = plans
    pay(sam.account, pro, P1, P2, payment_intent="pi_1")
    mid = P1 + 10 * DAY
    event = invoice_paid(subscription_id=SUB, price_id=pro.stripe_price_monthly, period_start=mid, period_end=P2,
                         metadata={"account_id": str(sam.account.id)}, amount_paid=1200, payment_intent="pi_upd",
                         billing_reason="subscription_update", created=mid + 5)
    prorations = [
        {"id": f"il_p{amount}", "object": "line_item", "amount": amount, "currency": "usd",
         "period": {"start": mid, "end": P2},
         "parent": {"type": "subscription_item_details",
                    "subscription_item_details": {"subscription": SUB, "proration": True}},
         "pricing": {"type": "price_details", "price_details": {"price": pro.stripe_price_monthly}}}
        for amount in (-300, 1000)
    ]
    one_off = {"id": "il_fee", "object": "line_item", "amount": 500, "currency": "usd",
               "period": {"start": mid, "end": mid},
               "parent": {"type": "invoice_item_details",
                          "invoice_item_details": {"invoice_item": "ii_1", "proration": False}},
               "pricing": {"type": "price_details", "price_details": {"price": "price_fee"}}}
    event["data"]["object"]["lines"]["data"] = [*prorations, one_off]

    response = deliver(event)

    assert response.json()["status"] == "ignored"
    note = WebhookEvent.objects.get(event_id=event["id"]).last_error
    assert "no subscription line for a new period" in note
    assert PlanCreditPeriod.objects.count() == 1
    assert PlanCreditPeriod.objects.get().closed_at is None
    assert rows(sam.account) == [("add", Decimal(100))]


@pytest.mark.parametrize("one_off_first", [False, True])
def test_a_proration_line_never_names_the_invoices_period(one_off_first):
    from payments.providers.stripe_events import subscription_period_line

    proration = {"id": "il_p", "type": "invoiceitem", "proration": True, "subscription": SUB,
                 "period": {"start": 1, "end": 2}}
    item = {"id": "il_i", "type": "invoiceitem", "proration": False, "period": {"start": 1, "end": 1}}
    lines = [item, proration] if one_off_first else [proration, item]
    assert subscription_period_line(lines) == {}
    subscription = {"id": "il_s", "type": "subscription", "subscription": SUB, "period": {"start": 3, "end": 4}}
    assert subscription_period_line([*lines, subscription]) is subscription
