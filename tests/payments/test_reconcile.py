"""``manage.py reconcile stripe|creem``: the provider's side (localstripe for Stripe, a local Creem fake of its
transactions list) against the rows our webhooks wrote, with drift injected on each side: a payment or a refund
whose webhook never came, a second credit, an order altered here, an amount or a currency the provider disagrees
with, a payment Stripe does not know. ``--fix`` posts through the webhook's own path (or an adjustment), once."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Platform
from credits.models import LedgerEntry, TransactionType
from credits.services import credits_debit, credits_grant
from payments.models import Order, OrderStatus, PlanCreditPeriod, WebhookEvent
from tests.conftest import make_member, make_platform
from tests.payments import creem_support
from tests.payments.conftest import deliver, session_event, start_top_up
from tests.payments.localstripe_billing import event_of
from tests.payments import reconcile_support
from tests.payments.reconcile_support import ReconcileStripe
from tests.subscriptions.conftest import make_plan

pytestmark = pytest.mark.django_db

# the fixtures (tests/payments/reconcile_support.py)
reconcile_stripe_server = reconcile_support.reconcile_stripe_server
reconcile_stripe = reconcile_support.reconcile_stripe
creem_transactions = reconcile_support.creem_transactions

SINCE = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def run(*args: str) -> tuple[int, str, str]:
    """The command as an operator runs it: its exit status (1 on CommandError), stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("reconcile", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return 1, out.getvalue(), f"{err.getvalue()}{exc}"
    return 0, out.getvalue(), err.getvalue()


def report(*args: str) -> tuple[int, dict]:
    code, out, _ = run(*args, "--json")
    return code, json.loads(out)


def drifts(found: dict) -> list[tuple[str, str, str]]:
    return [(d["kind"], d["our_ref"], d["state"]) for d in found["drifts"]]


def ledger(account_id) -> list[tuple[str, Decimal, str | None]]:  # noqa: ANN001
    return list(LedgerEntry.objects.filter(account_id=account_id).order_by("sequence")
                .values_list("transaction_type", "balance_delta", "idempotency_key"))


def assert_ledger_clean() -> None:
    out = io.StringIO()
    call_command("verify_ledger", stdout=out, stderr=io.StringIO())  # raises CommandError on a problem
    assert ", 0 with problems" in out.getvalue()


def paid_top_up(side: ReconcileStripe, member, amount: str = "25.00", *, delivered: bool = True):  # noqa: ANN001, ANN201
    """A top-up checked out through the API and paid at Stripe; its webhook delivered (or lost)."""
    shown = start_top_up(member, amount)
    event = side.pay(shown["provider_checkout_id"])
    if delivered:
        answer = deliver(event)
        assert answer.status_code == 200 and answer.json()["status"] == "processed", answer.content
    return Order.objects.get(pk=shown["id"]), event


def charge_of(side: ReconcileStripe, intent_id: str) -> str:
    return side.billing.retrieve("payment_intents", intent_id)["latest_charge"]["id"]


# --- a clean run -------------------------------------------------------------------------------------------------


def test_a_clean_run_checks_every_list_and_exits_0(reconcile_stripe, platform):
    side = reconcile_stripe
    tom = make_member(platform, "tom")
    order, event = paid_top_up(side, tom)
    intent = event["data"]["object"]["payment_intent"]
    side.billing.refund(intent, 1000)
    assert deliver(side.billing.charge_refunded(charge_of(side, intent))).json()["status"] == "processed"
    lena = make_member(platform, "lena")
    price = side.billing.price(amount=1000)
    make_plan(platform, "pro", price_monthly=1000, credits_included=Decimal(100), stripe_price_monthly=price)
    customer, _ = side.billing.customer_with_card()
    sub = side.billing.subscribe(customer, price, {"account_id": str(lena.account.id)})
    paid = deliver(event_of("invoice.paid", side.billing.retrieve("invoices", sub["latest_invoice"])))
    assert paid.json()["status"] == "processed", paid.content

    code, found = report("stripe", "--since", SINCE)

    assert code == 0, found
    assert found["drifts"] == [] and found["remaining"] == 0
    assert found["checked"] == {"checkout_sessions": 1, "payment_intents": 2, "invoices": 1, "refunds": 1,
                                "orders here": 1, "plan periods here": 1}
    code, out, _ = run("stripe", "--since", SINCE)
    assert code == 0 and out.splitlines()[-1] == "0 drift(s): 0 fixed, 0 remaining"
    assert "\r" not in out  # no progress bar when stdout is not a terminal


# --- drift on the provider's side: what our side never saw -----------------------------------------------------


def test_a_payment_whose_webhook_never_came_is_credited_once_by_fix(reconcile_stripe, platform):
    side = reconcile_stripe
    tom = make_member(platform, "tom")
    order, event = paid_top_up(side, tom, delivered=False)
    session_id = order.provider_checkout_id

    code, found = report("stripe", "--since", SINCE)
    assert code == 1
    assert drifts(found) == [("missing_credit", f"order {order.pk}", "fixable (--fix)")]
    assert found["drifts"][0]["provider_ref"] == session_id
    assert ledger(tom.account.id) == []

    code, found = report("stripe", "--since", SINCE, "--fix")
    assert code == 0, found
    assert drifts(found) == [("missing_credit", f"order {order.pk}", "fixed")]
    order.refresh_from_db()
    assert (order.status, order.amount_paid_usd) == (OrderStatus.PAID, Decimal("25.00"))
    assert ledger(tom.account.id) == [(TransactionType.ADD, Decimal(25), f"order:{order.pk}")]
    audit = WebhookEvent.objects.get(event_id=f"reconcile:checkout.session.completed:{session_id}")
    assert (audit.status, audit.order_id, audit.payload["reconciliation"]) == (
        "processed", order.pk, {"command": "manage.py reconcile stripe --fix", "drift": "missing_credit"})

    # Again: nothing left, nothing posted. The lost webhook arriving late changes nothing either.
    code, found = report("stripe", "--since", SINCE, "--fix")
    assert (code, found["drifts"]) == (0, [])
    late = deliver(event)
    assert late.status_code == 200 and late.json()["status"] == "processed"
    assert ledger(tom.account.id) == [(TransactionType.ADD, Decimal(25), f"order:{order.pk}")]
    assert_ledger_clean()


def test_a_refund_our_side_never_saw_is_taken_back_once_by_fix(reconcile_stripe, platform):
    side = reconcile_stripe
    tom = make_member(platform, "tom")
    order, event = paid_top_up(side, tom)
    intent = event["data"]["object"]["payment_intent"]
    side.billing.refund(intent, 1000)
    charge = charge_of(side, intent)

    code, found = report("stripe", "--since", SINCE)
    assert code == 1
    assert drifts(found) == [("refund_not_taken_back", f"order {order.pk}", "fixable (--fix)")]
    assert found["drifts"][0]["detail"] == "10.00 usd refunded, 0.00 taken back here"

    assert report("stripe", "--since", SINCE, "--fix")[0] == 0
    order.refresh_from_db()
    assert (order.status, order.amount_refunded_usd, order.credits_reversed) == (
        OrderStatus.PARTIALLY_REFUNDED, Decimal("10.00"), Decimal(10))
    expected = [(TransactionType.ADD, Decimal(25), f"order:{order.pk}"),
                (TransactionType.REFUND, Decimal(-10), f"refund:{charge}:1000")]
    assert ledger(tom.account.id) == expected
    assert WebhookEvent.objects.get(event_id=f"reconcile:charge.refunded:{charge}:1000").status == "processed"

    assert report("stripe", "--since", SINCE, "--fix") == (0, report("stripe", "--since", SINCE)[1])
    late = deliver(side.billing.charge_refunded(charge))
    assert late.json()["status"] == "processed"
    assert WebhookEvent.objects.get(event_id=late.json()["event_id"]).last_error == "refund already processed"
    assert ledger(tom.account.id) == expected
    assert_ledger_clean()


def test_a_renewal_paid_at_stripe_without_its_invoice_event_is_granted_by_fix(reconcile_stripe, platform):
    side = reconcile_stripe
    lena = make_member(platform, "lena")
    price = side.billing.price(amount=1000)
    make_plan(platform, "pro", price_monthly=1000, credits_included=Decimal(100), stripe_price_monthly=price)
    customer, _ = side.billing.customer_with_card()
    sub = side.billing.subscribe(customer, price, {"account_id": str(lena.account.id)})

    code, found = report("stripe", "--since", SINCE)
    assert code == 1
    assert drifts(found) == [("missing_credit", f"subscription {sub['id']}", "fixable (--fix)")]

    assert report("stripe", "--since", SINCE, "--fix")[0] == 0
    period = PlanCreditPeriod.objects.get(subscription__provider_subscription_id=sub["id"])
    assert (period.invoice_id, period.granted, period.amount_paid_usd) == (
        sub["latest_invoice"], Decimal(100), Decimal("10.00"))
    assert [(t, d) for t, d, _ in ledger(lena.account.id)] == [(TransactionType.ADD, Decimal(100))]
    assert report("stripe", "--since", SINCE, "--fix") == (0, report("stripe", "--since", SINCE)[1])
    assert len(ledger(lena.account.id)) == 1
    assert_ledger_clean()


def test_a_currency_the_provider_disagrees_with_is_left_to_a_person(reconcile_stripe, platform):
    side = reconcile_stripe
    tom = make_member(platform, "tom")
    order, _ = paid_top_up(side, tom, delivered=False)
    side.session(order.provider_checkout_id)["currency"] = "eur"  # Stripe charged in another currency

    code, found = report("stripe", "--since", SINCE, "--fix")

    assert code == 1
    assert drifts(found) == [("currency_mismatch", f"order {order.pk}", "needs a human")]
    assert found["drifts"][0]["detail"] == "paid in eur, the order is in usd"
    assert ledger(tom.account.id) == []
    assert not WebhookEvent.objects.exists()


def test_a_provider_amount_that_is_not_the_orders_is_left_to_a_person(reconcile_stripe, platform):
    side = reconcile_stripe
    tom = make_member(platform, "tom")
    order, _ = paid_top_up(side, tom, delivered=False)
    side.session(order.provider_checkout_id)["amount_total"] = 3000

    code, found = report("stripe", "--since", SINCE, "--fix")

    assert code == 1
    assert drifts(found) == [("amount_mismatch", f"order {order.pk}", "needs a human")]
    assert found["drifts"][0]["detail"] == "paid 30.00 usd, the order is 25.00 (not credited)"
    assert ledger(tom.account.id) == []


# --- drift on our side ----------------------------------------------------------------------------------------


def test_a_double_credit_is_taken_back_by_one_adjustment(reconcile_stripe, platform):
    side = reconcile_stripe
    tom = make_member(platform, "tom")
    order, _ = paid_top_up(side, tom)
    extra = credits_grant(account_id=tom.account.id, amount=Decimal(25), reference=f"order:{order.pk}",
                          description="Top-up via stripe (again, by hand)", idempotency_key="by-hand-1").entry

    code, found = report("stripe", "--since", SINCE)
    assert code == 1
    assert drifts(found) == [("double_credit", f"order {order.pk}", "fixable (--fix)")]

    assert report("stripe", "--since", SINCE, "--fix")[0] == 0
    taken = LedgerEntry.objects.get(account_id=tom.account.id, transaction_type=TransactionType.ADJUSTMENT)
    assert (taken.balance_delta, taken.idempotency_key, taken.reference) == (
        Decimal(-25), f"reconcile:stripe:double:{extra.pk}", f"order:{order.pk}")
    assert taken.description.startswith("Reconciliation with Stripe (manage.py reconcile stripe --fix)")
    assert taken.metadata["duplicate_entry_id"] == str(extra.pk)
    tom.account.refresh_from_db()
    assert tom.account.balance == Decimal(25)

    assert report("stripe", "--since", SINCE, "--fix") == (0, report("stripe", "--since", SINCE)[1])
    assert LedgerEntry.objects.filter(account_id=tom.account.id).count() == 3
    assert_ledger_clean()


def test_a_double_credit_already_spent_is_not_taken_back(reconcile_stripe, platform):
    side = reconcile_stripe
    tom = make_member(platform, "tom")
    order, _ = paid_top_up(side, tom)
    credits_grant(account_id=tom.account.id, amount=Decimal(25), reference=f"order:{order.pk}",
                  idempotency_key="by-hand-1")
    credits_debit(account_id=tom.account.id, amount=Decimal(40), description="usage")

    code, found = report("stripe", "--since", SINCE, "--fix")

    assert code == 1
    assert drifts(found) == [("double_credit", f"order {order.pk}", "fix failed")]
    extra = LedgerEntry.objects.get(idempotency_key="by-hand-1")
    assert found["drifts"][0]["fix_note"] == f"{extra.pk}: The account does not have enough available credits."
    assert not LedgerEntry.objects.filter(transaction_type=TransactionType.ADJUSTMENT).exists()
    assert_ledger_clean()


def test_an_order_altered_here_is_an_amount_mismatch_for_a_person(reconcile_stripe, platform):
    side = reconcile_stripe
    tom = make_member(platform, "tom")
    order, _ = paid_top_up(side, tom)
    Order.objects.filter(pk=order.pk).update(amount_usd=Decimal("20.00"), credits=Decimal(20))

    code, found = report("stripe", "--since", SINCE, "--fix")

    assert code == 1
    assert sorted(drifts(found)) == [("amount_mismatch", f"order {order.pk}", "needs a human")] * 2
    assert sorted(d["detail"] for d in found["drifts"]) == [
        "credited 25.00, the order grants 20.00", "paid 25.00 usd, the order is 20.00 (credited)"]
    assert len(ledger(tom.account.id)) == 1


def test_a_paid_order_stripe_does_not_know_is_reported_only(reconcile_stripe, platform):
    tom = make_member(platform, "tom")
    shown = start_top_up(tom, "25.00")  # the session stays open at Stripe: nobody paid it
    answer = deliver(session_event("checkout.session.completed", shown))  # a forged "paid", naming pi_test_1
    assert answer.json()["status"] == "processed", answer.content

    code, found = report("stripe", "--since", SINCE, "--fix")

    assert code == 1
    assert drifts(found) == [("unknown_to_provider", f"order {shown['id']}", "needs a human")]
    assert found["drifts"][0]["detail"] == "paid here; Stripe has no such payment"
    assert len(ledger(tom.account.id)) == 1


def test_platform_limits_the_run_to_its_rows(reconcile_stripe, platform):
    side = reconcile_stripe
    other = make_platform("globex", "Globex")
    tom, gus = make_member(platform, "tom"), make_member(other, "gus")
    paid_top_up(side, tom, delivered=False)
    theirs, _ = paid_top_up(side, gus, delivered=False)

    code, found = report("stripe", "--since", SINCE, "--platform", "globex")

    assert code == 1 and found["platform"] == "globex"
    assert drifts(found) == [("missing_credit", f"order {theirs.pk}", "fixable (--fix)")]


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["stripe", "--since", "last tuesday"], "is not an ISO date"),
    (["stripe", "--since", "2999-01-01"], "is in the future"),
    (["paypal"], "invalid choice: 'paypal'"),
    (["stripe", "--platform", "nope"], "no platform 'nope'"),
])
def test_bad_input_fails_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("reconcile", *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_an_unconfigured_provider_fails_clearly(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.CREEM_API_KEY = ""
    with pytest.raises(CommandError, match=r"Stripe is not configured on this service \(STRIPE_SECRET_KEY\)"):
        call_command("reconcile", "stripe", stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"Creem is not configured"):
        call_command("reconcile", "creem", stdout=io.StringIO())


# --- Creem ------------------------------------------------------------------------------------------------------


def _transaction(txn_id: str, *, period_start: datetime, subscription: str = "sub_test_1", amount: int = 2000,
                 refunded: int = 0, currency: str = "USD") -> dict:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return {"id": txn_id, "object": "transaction", "amount": amount, "amount_paid": amount, "currency": currency,
            "type": "invoice", "status": "paid" if not refunded else "partially_refunded",
            "refunded_amount": refunded, "order": "ord_test_1", "subscription": subscription,
            "customer": "cust_test_1", "period_start": int(period_start.timestamp() * 1000),
            "period_end": int((period_start + timedelta(days=31)).timestamp() * 1000), "created_at": now_ms,
            "mode": "test"}


def test_creem_transactions_are_compared_with_the_plan_periods(creem_transactions, platform: Platform):
    plan = creem_support.creem_plan(platform)
    sam = make_member(platform, "sam")
    order = creem_support.start_subscription_checkout(sam, plan)
    answer = creem_support.deliver(creem_support.checkout_completed(order, with_period=True))
    assert answer.status_code == 200, answer.content
    period = PlanCreditPeriod.objects.get(subscription__provider_subscription_id="sub_test_1")
    # Others' transactions on the same store (150: two pages of 100), then ours.
    creem_transactions.items = [_transaction(f"tran_other_{n}", period_start=creem_support.PERIOD_1,
                                             subscription=f"sub_other_{n}") for n in range(150)]
    creem_transactions.items.append(_transaction("tran_test_1", period_start=creem_support.PERIOD_1))

    code, found = report("creem", "--since", SINCE)
    assert code == 0, found
    assert found["checked"] == {"transactions": 151, "plan periods here": 1}
    assert creem_transactions.pages_served == 2

    # Creem refunded 5.00 of it and was paid for the next period: neither event reached us.
    creem_transactions.items[-1] = _transaction("tran_test_1", period_start=creem_support.PERIOD_1, refunded=500)
    creem_transactions.items.append(_transaction("tran_test_2", period_start=creem_support.PERIOD_2))
    before = ledger(sam.account.id)

    code, found = report("creem", "--since", SINCE, "--fix")

    assert code == 1
    assert drifts(found) == [
        ("refund_not_taken_back", f"plan period {period.pk}", "needs a human"),
        ("missing_credit", "subscription sub_test_1", "needs a human"),
    ]
    assert ledger(sam.account.id) == before

    # A period granted here that Creem has no transaction of.
    creem_transactions.items = creem_transactions.items[:150]
    code, found = report("creem", "--since", SINCE)
    assert code == 1
    assert drifts(found) == [("unknown_to_provider", f"plan period {period.pk}", "needs a human")]
