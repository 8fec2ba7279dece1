"""Concurrent deliveries: real threads, each with its own database connection, released together by a
Barrier, each POSTing a signed delivery to the endpoint."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from credits.models import LedgerEntry
from payments.models import Order, OrderStatus, WebhookEvent
from tests.conftest import make_member
from tests.credits.test_ledger_concurrency import run_together
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.payments.conftest import deliver, session_event, start_top_up

pytestmark = pytest.mark.django_db(transaction=True)

COMPLETED = "checkout.session.completed"
SUCCEEDED = "checkout.session.async_payment_succeeded"


def _outcomes(results: list) -> Counter:  # noqa: ANN001
    seen = Counter()
    for kind, value in results:
        assert kind == "ok", value
        assert value.status_code == 200, value.content
        body = value.json()
        seen[(body["status"], body["duplicate"])] += 1
    return seen


@pytest.mark.parametrize("event_type", [COMPLETED, SUCCEEDED])
def test_one_event_delivered_five_times_at_once_credits_once(fake_stripe, platform, event_type):
    member = make_member(platform, "mia")
    order = start_top_up(member, "40.00")
    event = session_event(event_type, order)

    results = run_together([lambda: deliver(event) for _ in range(5)])

    assert _outcomes(results) == Counter({("processed", False): 1, ("processed", True): 4})
    rows = LedgerEntry.objects.filter(account_id=member.account.id, transaction_type="add")
    assert [(r.balance_delta, r.payment_amount_usd) for r in rows] == [(Decimal("40"), Decimal("40"))]
    stored = WebhookEvent.objects.get()
    assert (stored.status, stored.attempts) == ("processed", 1)
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PAID
    member.account.refresh_from_db()
    assert_ledger_invariants(member.account)


def test_both_paid_events_each_delivered_five_times_at_once_credit_once(fake_stripe, platform):
    member = make_member(platform, "mia")
    order = start_top_up(member, "15.00")
    completed, succeeded = session_event(COMPLETED, order), session_event(SUCCEEDED, order)

    results = run_together([lambda e=e: deliver(e) for e in [completed, succeeded] * 5])

    assert _outcomes(results) == Counter({("processed", False): 2, ("processed", True): 8})
    assert LedgerEntry.objects.filter(reference=f"order:{order['id']}").count() == 1
    assert WebhookEvent.objects.filter(status="processed", attempts=1).count() == 2
    member.account.refresh_from_db()
    assert_ledger_invariants(member.account)
