"""A refund of a subscription's first invoice (its order's) locks the account's subscriptions and its plan period
before the credit account, as a renewal (``plan_periods.period_grant`` / ``_period_close``) does: the two never
deadlock (``payments.locks``)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from credits.models import CreditAccount
from payments.models import Order, PlanCreditPeriod
from subscriptions.locks import account_subscriptions_lock
from tests.conftest import make_member
from tests.payments import stripe_subscriptions
from tests.payments.conftest import deliver
from tests.payments.stripe_subscriptions import DAY, T0, charge_refunded, invoice_paid
from tests.payments.test_subscription_webhooks import plan_of
from tests.waits import backend_tag, blockers_of, wait_until_blocked

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe fixture

pytestmark = pytest.mark.django_db(transaction=True)

P1, P2 = T0, T0 + 31 * DAY


def test_a_first_invoice_refund_and_a_renewal_take_their_locks_in_one_order(stripe_billing, platform):
    ren = make_member(platform, "ren")
    plan = plan_of(platform)
    order = Order.objects.create(
        platform=platform, account=ren.account, user=ren.user, type="subscription", channel="stripe",
        amount_usd=Decimal("10.00"), credits=plan.credits_included, plan=plan, billing_cycle="monthly",
        success_url="https://app.acme.test/", cancel_url="https://app.acme.test/",
    )
    deliver(invoice_paid(subscription_id="sub_first", price_id=plan.stripe_price_monthly, period_start=P1,
                         period_end=P2, metadata={"order_id": str(order.id), "account_id": str(ren.account.id)},
                         payment_intent="pi_first_1", billing_reason="subscription_create", created=P1 + 10))
    period = PlanCreditPeriod.objects.get()
    result: dict[str, object] = {}

    refund_pid: list[str] = []
    refund_connected = threading.Event()

    def refund() -> None:
        try:
            refund_pid.append(backend_tag())  # the connection this thread's request runs on
            refund_connected.set()
            result["response"] = deliver(charge_refunded(charge_id="ch_first", payment_intent="pi_first_1",
                                                         amount=1000, amount_refunded=1000))
        finally:
            connections.close_all()

    renewal_error = None
    thread = threading.Thread(target=refund)
    try:
        with transaction.atomic():
            # What a renewal does: the account's subscriptions, the previous period's row, then the credit
            # account.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '10s'")
            account_subscriptions_lock(account_id=ren.account.id)
            list(PlanCreditPeriod.objects.select_for_update().filter(pk=period.pk))
            renewal_pid = backend_tag()
            thread.start()
            assert refund_connected.wait(timeout=30)
            # The race happened: the refund's backend waits for a lock this renewal holds (the subscriptions
            # lock, taken before the account's), as PostgreSQL itself shows, before the renewal goes on.
            wait_until_blocked(refund_pid[0])
            assert blockers_of(refund_pid[0]) == {renewal_pid}
            try:
                list(CreditAccount.objects.select_for_update().filter(pk=ren.account.pk))
            except Exception as exc:  # noqa: BLE001 - a deadlock or lock timeout is the failure under test
                renewal_error = exc
    finally:
        if thread.is_alive():
            thread.join(timeout=30)

    assert renewal_error is None
    assert result["response"].status_code == 200, result["response"].content
    assert result["response"].json()["status"] == "processed"
    period.refresh_from_db()
    assert period.credits_reversed == Decimal(100)
