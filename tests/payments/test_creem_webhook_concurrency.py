"""Concurrent Creem deliveries: real threads, each with its own database connection, released together by a
Barrier, each POSTing a signed delivery to the endpoint."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from credits.models import LedgerEntry
from payments.models import Order, OrderStatus, PlanCreditPeriod, WebhookEvent
from subscriptions.models import Subscription
from tests.conftest import make_member
from tests.credits.test_ledger_concurrency import run_together
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.payments.creem_support import (
    PERIOD_1,
    PERIOD_2,
    checkout_completed,
    creem_plan,
    deliver,
    refund_created,
    start_subscription_checkout,
    subscription_event,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _outcomes(results: list) -> Counter:  # noqa: ANN001
    seen = Counter()
    for kind, value in results:
        assert kind == "ok", value
        assert value.status_code == 200, value.content
        body = value.json()
        seen[(body["status"], body["duplicate"])] += 1
    return seen


def test_one_event_delivered_five_times_at_once_grants_once(fake_creem, platform):
    member = make_member(platform, "mia")
    order = start_subscription_checkout(member, creem_plan(platform))
    event = subscription_event("subscription.paid", order)

    results = run_together([lambda: deliver(event) for _ in range(5)])

    assert _outcomes(results) == Counter({("processed", False): 1, ("processed", True): 4})
    rows = LedgerEntry.objects.filter(account_id=member.account.id, reference__startswith="creem:")
    assert [(r.balance_delta, r.transaction_type) for r in rows] == [(Decimal("500"), "add")]
    stored = WebhookEvent.objects.get()
    assert (stored.status, stored.attempts) == ("processed", 1)
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PAID
    assert Subscription.objects.count() == 1
    member.account.refresh_from_db()
    assert_ledger_invariants(member.account)


def test_checkout_completed_and_subscription_paid_each_five_times_at_once_grant_once(fake_creem, platform):
    member = make_member(platform, "mia")
    order = start_subscription_checkout(member, creem_plan(platform))
    completed = checkout_completed(order, with_period=True)
    paid = subscription_event("subscription.paid", order)

    results = run_together([lambda e=e: deliver(e) for e in [completed, paid] * 5])

    assert _outcomes(results) == Counter({("processed", False): 2, ("processed", True): 8})
    rows = LedgerEntry.objects.filter(account_id=member.account.id, reference__startswith="creem:")
    assert rows.count() == 1
    assert Subscription.objects.count() == 1
    assert WebhookEvent.objects.filter(status="processed", attempts=1).count() == 2
    member.account.refresh_from_db()
    assert_ledger_invariants(member.account)


def test_one_refund_under_four_event_ids_at_once_after_the_close_counts_once(fake_creem, platform):
    """A refund that takes nothing back (its period closed, rollover none) writes no ledger row to be keyed on:
    the refund id itself dedupes it, under the account's lock, however the deliveries interleave."""
    from tests.payments.test_creem_rollover import paid, subscribe

    member = make_member(platform, "mia")
    _plan, order = subscribe(member)
    paid(order, PERIOD_2)  # closes PERIOD_1: its 500 credits expire
    events = [refund_created(order, period_start=PERIOD_1, refund_amount=1000, refund_id="ref_once",
                             event_id=f"evt_refund_{i}") for i in range(4)]

    results = run_together([lambda e=e: deliver(e) for e in events])

    assert _outcomes(results) == Counter({("processed", False): 4})
    notes = WebhookEvent.objects.filter(type="refund.created").values_list("last_error", flat=True)
    assert sum("already processed" in note for note in notes) == 3
    first = PlanCreditPeriod.objects.order_by("period_start").first()
    assert first.refund_expired_credits == Decimal(250)
    assert Order.objects.get(pk=order["id"]).amount_refunded_usd == Decimal(10)
    member.account.refresh_from_db()
    assert_ledger_invariants(member.account)
