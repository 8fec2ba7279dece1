"""charge.refunded: the refunded part of a paid order leaves as a negative ``refund`` row.

Policy when the credits are already spent: only what is available is removed (never a negative balance, never
reserved credits); the rest is recorded on the order (``refund_shortfall_credits``) and the order is flagged
``needs_review``."""

from __future__ import annotations

from decimal import Decimal

import pytest

from credits.models import LedgerEntry
from credits.services import credits_debit, credits_reverse_purchase, hold_create
from payments.models import Order, OrderStatus, WebhookEvent
from tests.conftest import make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants
from tests.payments.conftest import deliver, session_event, start_top_up
from tests.payments.stripe_subscriptions import charge_refunded

pytestmark = pytest.mark.django_db

COMPLETED = "checkout.session.completed"


@pytest.fixture
def paid(fake_stripe, platform):
    """A member with a paid 40.00 top-up (payment intent pi_test_1) and nothing else."""
    member = make_member(platform, "rita")
    order = start_top_up(member, "40.00")
    assert deliver(session_event(COMPLETED, order)).json()["status"] == "processed"
    return member, Order.objects.get(pk=order["id"])


def refund(cents: int, *, charge: str = "ch_test_1", **kwargs):
    response = deliver(
        charge_refunded(
            charge_id=charge, payment_intent="pi_test_1", amount=4000, amount_refunded=cents, **kwargs
        )
    )
    assert response.status_code == 200, response.content
    return response.json()


def refund_rows(member) -> list[Decimal]:
    return [
        r.balance_delta
        for r in LedgerEntry.objects.filter(account_id=member.account.id, transaction_type="refund").order_by(
            "sequence"
        )
    ]


def test_a_partial_then_full_refund_removes_only_the_new_part_each_time(paid):
    member, order = paid

    assert refund(1000)["status"] == "processed"
    order.refresh_from_db()
    assert (order.status, order.amount_refunded_usd, order.credits_reversed) == (
        OrderStatus.PARTIALLY_REFUNDED,
        Decimal("10.00"),
        Decimal(10),
    )
    assert order.refunded_at is not None

    refund(4000)
    # An older event (cumulative 10.00) arriving late changes nothing.
    assert refund(1000)["status"] == "processed"

    assert refund_rows(member) == [Decimal(-10), Decimal(-30)]
    order.refresh_from_db()
    assert (
        order.status,
        order.amount_refunded_usd,
        order.credits_reversed,
        order.refund_shortfall_credits,
    ) == (OrderStatus.REFUNDED, Decimal("40.00"), Decimal(40), 0)
    assert not order.needs_review
    member.account.refresh_from_db()
    assert member.account.balance == 0
    keys = set(
        LedgerEntry.objects.filter(transaction_type="refund").values_list("idempotency_key", flat=True)
    )
    assert keys == {"refund:ch_test_1:1000", "refund:ch_test_1:4000"}
    assert_ledger_invariants(member.account)


def test_spent_credits_are_not_taken_below_zero_the_shortfall_is_recorded(paid):
    member, order = paid
    credits_debit(account_id=member.account.id, amount=Decimal(35))

    refund(4000)

    assert refund_rows(member) == [Decimal(-5)]
    order.refresh_from_db()
    assert (order.status, order.credits_reversed, order.refund_shortfall_credits, order.needs_review) == (
        OrderStatus.REFUNDED,
        Decimal(5),
        Decimal(35),
        True,
    )
    assert "35.00 of 40.00 credits were already spent" in order.last_error
    member.account.refresh_from_db()
    assert member.account.balance == 0
    assert_ledger_invariants(member.account)


def test_everything_spent_writes_no_row_and_flags_the_order(paid):
    member, order = paid
    credits_debit(account_id=member.account.id, amount=Decimal(40))

    refund(2000)

    assert refund_rows(member) == []
    order.refresh_from_db()
    assert (order.status, order.refund_shortfall_credits, order.needs_review) == (
        OrderStatus.PARTIALLY_REFUNDED,
        Decimal(20),
        True,
    )


def test_reserved_credits_stay_reserved(paid):
    member, order = paid
    hold_create(account_id=member.account.id, amount=Decimal(30))

    refund(4000)

    assert refund_rows(member) == [Decimal(-10)]
    member.account.refresh_from_db()
    assert (member.account.balance, member.account.reserved) == (Decimal(30), Decimal(30))
    order.refresh_from_db()
    assert order.refund_shortfall_credits == Decimal(30)


def test_a_refund_before_the_payment_is_parked_then_applied(fake_stripe, platform):
    member = make_member(platform, "pat")
    order = start_top_up(member, "40.00")
    early = charge_refunded(
        charge_id="ch_early",
        payment_intent="pi_test_1",
        amount=4000,
        amount_refunded=1000,
        metadata={"order_id": order["id"]},
    )

    assert deliver(early).json()["status"] == "parked"
    assert refund_rows(member) == []

    deliver(session_event(COMPLETED, order))

    assert refund_rows(member) == [Decimal(-10)]
    stored = WebhookEvent.objects.get(event_id=early["id"])
    assert (stored.status, str(stored.order_id)) == ("processed", order["id"])
    assert deliver(early).json()["duplicate"] is True
    assert refund_rows(member) == [Decimal(-10)]
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.PARTIALLY_REFUNDED


def test_a_charge_of_no_order_of_ours_is_parked(fake_stripe, platform):
    """Parked, not ignored: its order (or renewal invoice) may not have arrived yet."""
    response = deliver(
        charge_refunded(charge_id="ch_x", payment_intent="pi_unknown", amount=500, amount_refunded=500)
    )
    assert response.json()["status"] == "parked"
    assert LedgerEntry.objects.filter(transaction_type="refund").count() == 0


@pytest.mark.parametrize(("kwargs", "reason"), [({"currency": "eur"}, "refunded in eur")])
def test_a_refund_that_disagrees_with_the_order_is_refused_and_flagged(paid, kwargs, reason):
    member, order = paid
    assert refund(4000, **kwargs)["status"] == "failed"
    order.refresh_from_db()
    assert order.needs_review and reason in order.last_error and order.status == OrderStatus.PAID
    assert refund_rows(member) == []


def test_more_refunded_than_paid_is_refused(paid):
    member, order = paid
    assert order.status == OrderStatus.PAID
    response = deliver(
        charge_refunded(charge_id="ch_test_1", payment_intent="pi_test_1", amount=9000, amount_refunded=9000)
    )
    assert response.json()["status"] == "failed"
    assert refund_rows(member) == []


def test_reverse_purchase_service_is_keyed_and_stops_at_available(platform):
    member = make_member(platform, "vic", credits="10.00")

    first = credits_reverse_purchase(
        account_id=member.account.id, amount=Decimal(25), idempotency_key="refund:k"
    )
    again = credits_reverse_purchase(
        account_id=member.account.id, amount=Decimal(25), idempotency_key="refund:k"
    )

    assert (first.removed, first.shortfall, first.replayed) == (Decimal(10), Decimal(15), False)
    assert (again.entry.pk, again.removed, again.replayed) == (first.entry.pk, Decimal(10), True)
    assert first.entry.transaction_type == "refund" and first.entry.balance_delta == Decimal(-10)
    member.account.refresh_from_db()
    assert member.account.balance == 0
