"""Auto-recharge: settings on the account (PATCH /api/billing/account/), the off-session charge started after a
debit leaves the account below its threshold (the real ``stripe`` library against localstripe), and the
credits arriving through the signed webhook, once."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import pytest
import psycopg
from django.utils import timezone

from credits.models import CreditAccount, LedgerEntry, TransactionType
from credits.services import credits_debit, credits_grant, hold_capture, hold_create
from payments import recharge as recharge_service
from payments.errors import PaymentProviderError
from payments.models import PlatformPaymentSettings, WebhookEvent
from payments.providers import stripe as stripe_provider
from payments.recharge_models import AutoRechargeSettings, Recharge, RechargeFailure, RechargeStatus, SavedPaymentMethod
from payments.tasks import recharge_charge_task, recharges_resume
from tests.api_helpers import ACCOUNT_URL, error_of, invalid_field
from tests.conftest import Member, client_for, make_member
from tests.payments.conftest import WEBHOOK_SECRET, deliver
from tests.payments.local_servers import LocalStripe, localstripe, stripe_settings  # noqa: F401 - fixtures
from tests.payments.recharge_support import (  # noqa: F401 - payment_intents: a fixture
    PaymentIntents,
    auto_recharge_of,
    auto_recharge_set,
    payment_intents,
)
from tests.waits import backend_tag, wait_until_blocked

pytestmark = pytest.mark.django_db

DECLINING_CARD = "4000000000000341"  # localstripe: attaches, every charge declined
_events = itertools.count(1)


def patch(member: Member, body: dict):  # noqa: ANN201
    return client_for(member).patch(ACCOUNT_URL, data=body, format="json")


def enabled_member(platform, localstripe: LocalStripe, name: str = "ada", *, card: str = "4242424242424242",  # noqa: ANN001
                   threshold: str = "10.00", amount: str = "20.00", limit: str | None = "100.00") -> Member:
    member = make_member(platform, name, credits="15")
    customer, method = localstripe.customer_with_card(card)
    recharge_service.payment_method_save(
        account_id=member.account.id, customer_id=customer, payment_method_id=method, brand="visa", last4=card[-4:]
    )
    response = patch(member, {
        "auto_recharge_enabled": True, "auto_recharge_threshold_usd": threshold, "auto_recharge_amount_usd": amount,
        "auto_recharge_spending_limit_usd": limit,
    })
    assert response.status_code == 200, response.content
    return member


def debit(member: Member, amount: str, capture) -> None:  # noqa: ANN001
    """A debit whose after-commit work (the recharge task, eager without a broker) runs."""
    with capture(execute=True):
        credits_debit(account_id=member.account.id, amount=Decimal(amount), description="usage")


def intent_event(intent: dict, event_type: str = "payment_intent.succeeded", event_id: str | None = None) -> dict:
    obj = dict(intent)
    if event_type == "payment_intent.succeeded":
        obj["amount_received"] = obj["amount"]
    return {
        "id": event_id or f"evt_recharge_{next(_events):06d}", "object": "event", "type": event_type,
        "api_version": "2025-09-30.clover", "created": int(time.time()), "livemode": False,
        "data": {"object": obj},
    }


def add_rows(account_id) -> list[LedgerEntry]:  # noqa: ANN001
    return list(LedgerEntry.objects.filter(account_id=account_id, transaction_type=TransactionType.ADD,
                                           reference__startswith="recharge:"))


# --- settings ---------------------------------------------------------------------------------------------


def test_enabling_needs_a_saved_payment_method(platform):  # noqa: ANN001
    member = make_member(platform, "ada")
    body = client_for(member).get(ACCOUNT_URL).json()
    assert (body["can_use_auto_recharge"], body["has_payment_method"]) == (False, False)
    response = patch(member, {"auto_recharge_enabled": True, "auto_recharge_threshold_usd": "10.00",
                              "auto_recharge_amount_usd": "20.00"})
    error_of(response, 409, "payment_method_required")
    assert auto_recharge_of(member.account.id).enabled is False


def test_settings_are_validated_and_saved(platform):  # noqa: ANN001
    member = make_member(platform, "ada")
    PlatformPaymentSettings.objects.create(platform=platform, top_up_min_usd=Decimal(5), top_up_max_usd=Decimal(50))
    invalid_field(patch(member, {"auto_recharge_threshold_usd": "-1"}), "auto_recharge_threshold_usd")
    invalid_field(patch(member, {"auto_recharge_amount_usd": "0"}), "auto_recharge_amount_usd")
    invalid_field(patch(member, {"auto_recharge_amount_usd": "60.00"}), "auto_recharge_amount_usd")
    invalid_field(patch(member, {"auto_recharge_amount_usd": "20.00", "auto_recharge_spending_limit_usd": "10.00"}),
                  "auto_recharge_spending_limit_usd")
    assert patch(member, {}).status_code == 400
    recharge_service.payment_method_save(account_id=member.account.id, customer_id="cus_1", payment_method_id="pm_1",
                                         brand="visa", last4="4242")
    invalid_field(patch(member, {"auto_recharge_enabled": True}), "auto_recharge_threshold_usd")
    response = patch(member, {"auto_recharge_enabled": True, "auto_recharge_threshold_usd": "10",
                              "auto_recharge_amount_usd": "20.00", "auto_recharge_spending_limit_usd": "40.00"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["auto_recharge_enabled"] is True
    assert (body["auto_recharge_threshold_usd"], body["auto_recharge_amount_usd"],
            body["auto_recharge_spending_limit_usd"]) == ("10.00", "20.00", "40.00")
    assert (body["can_use_auto_recharge"], body["has_payment_method"]) == (True, True)
    assert body["auto_recharge_last_triggered_at"] is None
    assert client_for(member).get(ACCOUNT_URL).json() == body
    off = patch(member, {"auto_recharge_enabled": False}).json()
    assert off["auto_recharge_enabled"] is False and off["auto_recharge_amount_usd"] == "20.00"


def test_the_account_endpoints_read_auto_recharge_in_one_query(platform, django_assert_num_queries):  # noqa: ANN001
    """The settings and whether a card is saved come in one query (``recharge.auto_recharge_get``): GET /account/
    is the account, its subscription, auto-recharge, the pricing table and the platform; a PATCH adds the
    account's lock, the settings row, the platform's payment settings, the saved-card check and the write."""
    member = make_member(platform, "ada")
    recharge_service.payment_method_save(account_id=member.account.id, customer_id="cus_1", payment_method_id="pm_1")
    client = client_for(member)
    client.get(ACCOUNT_URL)  # the token and membership lookups are cached after the first request
    with django_assert_num_queries(5):
        assert client.get(ACCOUNT_URL).status_code == 200
    with django_assert_num_queries(11):
        response = patch(member, {"auto_recharge_enabled": True, "auto_recharge_threshold_usd": "10.00",
                                  "auto_recharge_amount_usd": "20.00"})
    assert response.status_code == 200, response.content
    assert CreditAccount.objects.get(pk=member.account.id).low_balance_threshold == Decimal("10.00")


def statements_of(work, monkeypatch) -> list[str]:  # noqa: ANN001
    """Every statement ``work`` sends, through Django's cursors or the ledger's own psycopg cursor."""
    sent: list[str] = []
    original = psycopg.Cursor.execute

    def execute(self, query, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        sent.append(str(query))
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    work()
    monkeypatch.undo()
    return sent


def test_a_debit_costs_one_statement_when_auto_recharge_is_off_or_not_due(platform, monkeypatch):  # noqa: ANN001
    member = make_member(platform, "ada", credits="50")
    one = statements_of(lambda: credits_debit(account_id=member.account.id, amount=Decimal("10")), monkeypatch)
    assert len(one) == 1 and one[0].startswith("WITH")
    auto_recharge_set(member.account.id, enabled=True, threshold_usd=Decimal(10), amount_usd=Decimal(20))
    above = statements_of(lambda: credits_debit(account_id=member.account.id, amount=Decimal("10")), monkeypatch)
    assert len(above) == 1  # 30 left, above the threshold: nothing scheduled
    assert not Recharge.objects.exists()


# --- the charge and the webhook ---------------------------------------------------------------------------


def test_a_debit_below_the_threshold_charges_off_session_and_the_webhook_credits_once(
    platform, stripe_settings, django_capture_on_commit_callbacks  # noqa: ANN001
):
    member = enabled_member(platform, stripe_settings)
    debit(member, "4", django_capture_on_commit_callbacks)  # 11 left: above the threshold
    assert not Recharge.objects.exists()
    debit(member, "2", django_capture_on_commit_callbacks)  # 9 left
    recharge = Recharge.objects.get()
    assert recharge.status == RechargeStatus.PROCESSING and recharge.amount_usd == Decimal("20.00")
    assert stripe_settings.forwarded[f"recharge:{recharge.id}"] == 1
    intent = stripe_settings.payment_intent(recharge.provider_payment_id)
    method = SavedPaymentMethod.objects.get(account_id=member.account.id)
    assert (intent["amount"], intent["currency"], intent["status"]) == (2000, "usd", "succeeded")
    assert (intent["customer"], intent["payment_method"]) == (method.provider_customer_id,
                                                              method.provider_payment_method_id)
    assert intent["metadata"]["recharge_id"] == str(recharge.id)
    account = CreditAccount.objects.get(pk=member.account.id)
    assert auto_recharge_of(account.id).last_triggered_at is not None
    assert account.balance == Decimal(9) and not add_rows(account.id)  # credits only through the webhook

    event = intent_event(intent)
    for _ in range(2):
        assert deliver(event).status_code == 200
    assert deliver(intent_event(intent)).status_code == 200  # another event about the same payment
    rows = add_rows(account.id)
    assert len(rows) == 1
    assert (rows[0].balance_delta, rows[0].payment_amount_usd) == (Decimal(20), Decimal("20.00"))
    account.refresh_from_db()
    assert account.balance == Decimal(29)
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.SUCCEEDED and recharge.ledger_entry_id == rows[0].id
    assert WebhookEvent.objects.filter(event_id=event["id"]).get().status == "processed"


def test_hold_captures_trigger_a_recharge_too(platform, stripe_settings, django_capture_on_commit_callbacks):  # noqa: ANN001
    member = enabled_member(platform, stripe_settings)
    hold = hold_create(account_id=member.account.id, amount=Decimal(8)).hold
    with django_capture_on_commit_callbacks(execute=True):
        hold_capture(hold_id=hold.id, amount=Decimal(7))
    assert Recharge.objects.get().status == RechargeStatus.PROCESSING


def test_one_recharge_in_flight_per_account(platform, stripe_settings, django_capture_on_commit_callbacks):  # noqa: ANN001
    member = enabled_member(platform, stripe_settings)
    for _ in range(3):
        debit(member, "2", django_capture_on_commit_callbacks)
    assert Recharge.objects.count() == 1
    assert recharge_charge_task(str(member.account.id)) is None


def test_never_beyond_the_monthly_spending_limit(platform, stripe_settings, django_capture_on_commit_callbacks):  # noqa: ANN001
    member = enabled_member(platform, stripe_settings, limit="30.00")
    debit(member, "6", django_capture_on_commit_callbacks)
    first = Recharge.objects.get()
    assert deliver(intent_event(stripe_settings.payment_intent(first.provider_payment_id))).status_code == 200
    debit(member, "25", django_capture_on_commit_callbacks)  # 29 - 25 = 4: below, but 20 + 20 > 30
    assert Recharge.objects.count() == 1
    assert CreditAccount.objects.get(pk=member.account.id).available == Decimal(4)


def test_three_declines_in_a_row_turn_auto_recharge_off(platform, stripe_settings, django_capture_on_commit_callbacks):  # noqa: ANN001
    member = enabled_member(platform, stripe_settings, card=DECLINING_CARD)
    for n, amount in enumerate(["6", "1", "1"], start=1):  # 9, 8, 7 left: each below the threshold
        debit(member, amount, django_capture_on_commit_callbacks)
        assert Recharge.objects.filter(status=RechargeStatus.FAILED).count() == n
    assert auto_recharge_of(member.account.id).enabled is False
    assert CreditAccount.objects.get(pk=member.account.id).low_balance_threshold is None  # no more hook calls
    latest = Recharge.objects.first()
    assert "declined" in latest.last_error and latest.failure_reason == RechargeFailure.DECLINED
    debit(member, "1", django_capture_on_commit_callbacks)
    assert Recharge.objects.count() == 3
    assert client_for(member).get(ACCOUNT_URL).json()["auto_recharge_enabled"] is False


def test_a_payment_failed_event_fails_the_recharge(platform, stripe_settings, django_capture_on_commit_callbacks):  # noqa: ANN001
    member = enabled_member(platform, stripe_settings)
    debit(member, "6", django_capture_on_commit_callbacks)
    recharge = Recharge.objects.get()
    intent = stripe_settings.payment_intent(recharge.provider_payment_id)
    failed = intent_event(intent | {"status": "requires_payment_method",
                                    "last_payment_error": {"message": "Your card was declined."}},
                          "payment_intent.payment_failed")
    assert deliver(failed).status_code == 200
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.FAILED and recharge.last_error == "Your card was declined."
    assert recharge.failure_reason == RechargeFailure.DECLINED
    assert auto_recharge_of(member.account.id).enabled is True  # one failure only
    # Money taken after all (the PaymentIntent succeeded later): it is credited, once.
    for _ in range(2):
        assert deliver(intent_event(intent)).status_code == 200
    assert len(add_rows(member.account.id)) == 1


def test_a_worker_killed_between_the_charge_and_the_webhook_credits_once_after_redelivery(
    platform, stripe_settings, django_capture_on_commit_callbacks  # noqa: ANN001
):
    member = enabled_member(platform, stripe_settings)
    credits_debit(account_id=member.account.id, amount=Decimal(6))  # the task is lost with the worker
    recharge = recharge_service.recharge_start(account_id=member.account.id)
    # The worker sends the charge, then dies before recording Stripe's answer.
    stripe_provider.payment_intent_off_session_create(
        amount_cents=recharge.amount_cents, customer_id=recharge.provider_customer_id,
        payment_method_id=recharge.provider_payment_method_id,
        metadata={"recharge_id": str(recharge.id)}, idempotency_key=f"recharge:{recharge.id}",
    )
    assert Recharge.objects.get().status == RechargeStatus.PENDING
    # The task runs again (a redelivered message, or the beat's resume): same key, same PaymentIntent.
    Recharge.objects.filter(pk=recharge.id).update(updated_at=recharge.updated_at - __import__("datetime").timedelta(minutes=5))
    assert recharges_resume() == 1
    assert recharge_charge_task(str(member.account.id)) is None  # in flight: nothing new
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.PROCESSING
    key = f"recharge:{recharge.id}"
    assert (stripe_settings.keys[key], stripe_settings.forwarded[key]) == (2, 1)  # one PaymentIntent
    event = intent_event(stripe_settings.payment_intent(recharge.provider_payment_id))
    for _ in range(3):
        assert deliver(event).status_code == 200
    assert len(add_rows(member.account.id)) == 1
    assert CreditAccount.objects.get(pk=member.account.id).balance == Decimal(29)


def test_the_card_of_a_top_up_saved_for_later_becomes_the_recharge_method(platform, stripe_settings):  # noqa: ANN001
    from payments.models import Order

    member = make_member(platform, "ada")
    order = Order.objects.create(
        platform=platform, account=member.account, user=member.user, type="top_up", channel="stripe",
        amount_usd=Decimal("25.00"), credits=Decimal(25), success_url="https://a.test/", cancel_url="https://a.test/",
    )
    customer, method = stripe_settings.customer_with_card()
    intent = {"id": "pi_topup_1", "object": "payment_intent", "amount": 2500, "currency": "usd",
              "customer": customer, "payment_method": method, "setup_future_usage": "off_session",
              "metadata": {"order_id": str(order.id)}, "status": "succeeded"}
    assert deliver(intent_event(intent)).status_code == 200
    saved = SavedPaymentMethod.objects.get(account_id=member.account.id)
    assert (saved.provider_customer_id, saved.provider_payment_method_id) == (customer, method)
    assert client_for(member).get(ACCOUNT_URL).json()["can_use_auto_recharge"] is True


def test_a_batch_of_debits_triggers_one_recharge(platform, stripe_settings, django_capture_on_commit_callbacks):  # noqa: ANN001
    from django.db import transaction

    from credits import ledger
    from credits.ledger import Posting

    member = enabled_member(platform, stripe_settings)
    debits = [(member.account.id, Posting(transaction_type=TransactionType.SUBTRACT, balance_delta=Decimal(-2)))] * 3
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        ledger.post_many(debits)
    assert len(callbacks) == 1  # one hook per account, however many of its debits
    assert Recharge.objects.get().status == RechargeStatus.PROCESSING


# --- a removed (or replaced) card is never charged -------------------------------------------------------------
# Stripe is the HTTP fake of ``POST /v1/payment_intents`` (``payment_intents``): the cards here are not localstripe's.


def _enabled_with_card(member: Member) -> None:
    recharge_service.payment_method_save(account_id=member.account.id, customer_id="cus_m", payment_method_id="pm_m")
    auto_recharge_set(member.account.id, enabled=True, threshold_usd=Decimal(100000), amount_usd=Decimal(10))


def _pending_recharge(member: Member, payment_intents: PaymentIntents) -> Recharge:
    """A recharge left pending: its first charge failed at the provider (the beat retries it later)."""
    _enabled_with_card(member)
    recharge = recharge_service.recharge_start(account_id=member.account.id)
    assert recharge is not None
    payment_intents.answer("error")  # Stripe answers 500
    with pytest.raises(PaymentProviderError):
        recharge_service.recharge_charge(recharge_id=recharge.id)
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.PENDING
    return recharge


def _charges(payment_intents: PaymentIntents) -> list:
    """The requests Stripe receives from now on; it accepts them (a succeeded PaymentIntent ``pi_x``)."""
    return payment_intents.answer("succeeded")


def test_removing_the_card_fails_a_recharge_never_sent_and_the_retry_charges_nothing(platform, payment_intents):
    from payments import payment_methods

    member = make_member(platform, "ada")
    _enabled_with_card(member)
    recharge = recharge_service.recharge_start(account_id=member.account.id)
    assert recharge is not None and recharge.attempts == 0  # recorded, not sent yet
    payment_methods.payment_method_remove(account=member.account)
    recharge.refresh_from_db()
    assert (recharge.status, recharge.failure_reason, recharge.last_error) == (
        RechargeStatus.FAILED, RechargeFailure.PAYMENT_METHOD_REMOVED, "payment method removed")
    assert recharge.settled_at is not None
    assert CreditAccount.objects.get(pk=member.account.id).low_balance_threshold is None
    calls = _charges(payment_intents)
    recharge_service.recharge_charge(recharge_id=recharge.id)  # what recharges_resume's task does
    assert calls == []
    assert recharge_service.recharge_start(account_id=member.account.id) is None  # auto-recharge is off


def test_removing_the_card_leaves_a_sent_recharge_in_flight_and_the_resume_charges_nothing(platform, payment_intents):
    """A recharge sent once (its answer lost: a provider error) may have been charged: a removal does not cancel
    it; it keeps its place in flight until the resume re-checks the card, which cancels it without calling Stripe."""
    from payments import payment_methods

    member = make_member(platform, "ada")
    recharge = _pending_recharge(member, payment_intents)
    assert recharge.attempts == 1
    payment_methods.payment_method_remove(account=member.account)
    recharge.refresh_from_db()
    assert (recharge.status, recharge.settled_at) == (RechargeStatus.PENDING, None)
    calls = _charges(payment_intents)
    recharge = recharge_service.recharge_charge(recharge_id=recharge.id)  # what recharges_resume's task does
    assert calls == []
    assert recharge.status == RechargeStatus.FAILED and recharge.failure_reason == RechargeFailure.CANCELLED
    assert recharge_service.recharge_start(account_id=member.account.id) is None  # auto-recharge is off


@pytest.mark.django_db(transaction=True)
def test_a_card_removed_while_the_charge_is_on_its_way_leaves_the_recharge_in_flight(platform, payment_intents):
    """The card is checked (and the recharge marked sent) before the Stripe call, which no lock spans: a removal
    committing in between must not cancel a recharge that Stripe then charges, or re-enabling with a new card
    could start a second charge while the first is still being paid."""
    from django.db import connection

    from payments import payment_methods

    member = make_member(platform, "ada")
    _enabled_with_card(member)
    recharge = recharge_service.recharge_start(account_id=member.account.id)
    removed: list = []

    def remove_first(form: dict) -> None:  # the owner's DELETE /api/billing/payment-method/ commits just before
        try:  # Stripe answers (in the server's thread: its own connection)
            payment_methods.payment_method_remove(account=CreditAccount.objects.get(pk=member.account.id))
            removed.append(form["metadata[recharge_id]"])
        finally:
            connection.close()

    calls = payment_intents.answer("processing")
    payment_intents.before_answer = remove_first
    recharge = recharge_service.recharge_charge(recharge_id=recharge.id)
    recharge.refresh_from_db()
    assert len(calls) == 1 and removed == [str(recharge.id)]
    assert (recharge.status, recharge.provider_payment_id, recharge.last_error) == (
        RechargeStatus.PROCESSING, "pi_x", "")
    assert not auto_recharge_of(member.account.id).enabled

    payment_intents.before_answer = None
    recharge_service.payment_method_save(account_id=member.account.id, customer_id="cus_m",
                                         payment_method_id="pm_new", as_of=timezone.now())  # a new card
    recharge_service.auto_recharge_update(account_id=member.account.id, enabled=True)
    assert recharge_service.recharge_start(account_id=member.account.id) is None  # the first is still in flight


@pytest.mark.django_db(transaction=True)
def test_the_third_decline_locks_the_account_before_the_recharge_as_the_webhook_does(platform, payment_intents):
    """The third failure in a row turns auto-recharge off on the account row: ``recharge_charge`` must hold the
    account before the recharge, as ``payment_intent.payment_failed`` (``recharge_event_apply``) does, or the two
    deadlock."""
    import threading

    from django.db import connections, transaction

    from credits.locks import account_lock

    member = make_member(platform, "ada")
    _enabled_with_card(member)
    for _ in range(2):
        Recharge.objects.create(account_id=member.account.id, amount_usd=Decimal(10), credits=Decimal(10),
                                provider_customer_id="cus_m", provider_payment_method_id="pm_m",
                                status=RechargeStatus.FAILED, failure_reason=RechargeFailure.DECLINED,
                                last_error="declined")
    recharge = recharge_service.recharge_start(account_id=member.account.id)
    assert recharge is not None
    payment_intents.answer("declined")
    payment_intents.intent_id, payment_intents.decline_message = "pi_d", "declined"
    errors: dict[str, BaseException] = {}
    charge_pid: list[str] = []
    pid_known = threading.Event()

    def charge() -> None:
        try:
            charge_pid.append(backend_tag())
            pid_known.set()
            recharge_service.recharge_charge(recharge_id=recharge.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors["charge"] = exc
        finally:
            pid_known.set()
            connections.close_all()

    with transaction.atomic():  # what the payment_failed webhook holds: the account, then the recharge
        account_lock(account_id=member.account.id)
        thread = threading.Thread(target=charge)
        thread.start()
        assert pid_known.wait(30) and charge_pid, errors
        wait_until_blocked(charge_pid[0])  # the charge waits for the account: the race is on
        try:
            list(Recharge.objects.select_for_update().filter(pk=recharge.id))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors["webhook"] = exc
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not errors, errors
    recharge.refresh_from_db()
    assert (recharge.status, recharge.last_error) == (RechargeStatus.FAILED, "declined")
    assert recharge.failure_reason == RechargeFailure.DECLINED
    assert not auto_recharge_of(member.account.id).enabled


@pytest.mark.parametrize("change", ["auto_recharge_off", "card_replaced", "card_removed_behind_its_back"])
def test_a_pending_recharge_is_charged_only_on_the_accounts_active_card(platform, payment_intents, change):
    member = make_member(platform, "ada")
    recharge = _pending_recharge(member, payment_intents)
    if change == "auto_recharge_off":
        auto_recharge_set(member.account.id, enabled=False)
    elif change == "card_replaced":
        recharge_service.payment_method_save(account_id=member.account.id, customer_id="cus_m",
                                             payment_method_id="pm_new")
    else:
        SavedPaymentMethod.objects.filter(account_id=member.account.id).update(removed_at=timezone.now())
    calls = _charges(payment_intents)
    recharge = recharge_service.recharge_charge(recharge_id=recharge.id)
    assert calls == []
    assert recharge.status == RechargeStatus.FAILED and recharge.failure_reason == RechargeFailure.CANCELLED
    following = recharge_service.recharge_start(account_id=member.account.id)
    if change == "card_replaced":  # the slot is free again: the next recharge charges the new card
        assert following is not None and following.provider_payment_method_id == "pm_new"
    else:
        assert following is None


def test_the_pending_recharge_is_charged_while_the_card_is_still_there(platform, payment_intents):
    member = make_member(platform, "ada")
    recharge = _pending_recharge(member, payment_intents)
    calls = _charges(payment_intents)
    recharge = recharge_service.recharge_charge(recharge_id=recharge.id)
    assert [c["form"]["payment_method"] for c in calls] == ["pm_m"]
    assert [c["key"] for c in calls] == [f"recharge:{recharge.id}"]
    assert recharge.status == RechargeStatus.PROCESSING


def test_a_recharge_sent_before_the_card_was_removed_is_still_credited(platform, payment_intents):
    from payments import payment_methods

    member = make_member(platform, "ada")
    recharge = _pending_recharge(member, payment_intents)
    _charges(payment_intents)
    assert recharge_service.recharge_charge(recharge_id=recharge.id).status == RechargeStatus.PROCESSING
    payment_methods.payment_method_remove(account=member.account)
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.PROCESSING  # sent to Stripe: its webhook settles it
    intent = {"id": "pi_x", "object": "payment_intent", "amount": 1000, "currency": "usd", "status": "succeeded",
              "metadata": {"recharge_id": str(recharge.id), "account_id": str(member.account.id)}}
    assert deliver(intent_event(intent)).status_code == 200
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.SUCCEEDED and len(add_rows(member.account.id)) == 1


def test_a_sent_recharge_cancelled_by_the_resume_still_counts_against_the_monthly_limit(platform, payment_intents):
    """Its answer was lost, then the card was replaced: the resume cancels it without calling Stripe, but Stripe
    may have charged it (a late webhook still credits it), so a second recharge may not exceed the limit."""
    member = make_member(platform, "ada")
    first = _pending_recharge(member, payment_intents)  # sent once (attempts 1), answer lost
    auto_recharge_set(member.account.id, spending_limit_usd=Decimal(15))
    recharge_service.payment_method_save(account_id=member.account.id, customer_id="cus_m", payment_method_id="pm_new")
    calls = _charges(payment_intents)
    first = recharge_service.recharge_charge(recharge_id=first.id)  # the resume: card replaced -> cancelled
    assert calls == [] and first.status == RechargeStatus.FAILED and first.failure_reason == RechargeFailure.CANCELLED

    assert recharge_service.recharge_start(account_id=member.account.id) is None  # 10 + 10 > 15

    auto_recharge_set(member.account.id, spending_limit_usd=Decimal(20))
    assert recharge_service.recharge_start(account_id=member.account.id) is not None  # 10 + 10 <= 20


# --- the admin -------------------------------------------------------------------------------------------------


def test_the_admin_edits_settings_under_the_api_rules_and_keeps_the_low_balance_threshold(platform):  # noqa: ANN001
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    browser = Client()
    browser.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only"))
    member = make_member(platform, "ada")
    add = reverse("admin:payments_autorechargesettings_add")
    on = {"account": str(member.account.id), "enabled": "on", "threshold_usd": "10", "amount_usd": "20",
          "spending_limit_usd": ""}
    response = browser.post(add, on)
    assert response.status_code == 200 and "enabled" in response.context["adminform"].form.errors  # no card yet
    assert not AutoRechargeSettings.objects.exists()

    recharge_service.payment_method_save(account_id=member.account.id, customer_id="cus_1", payment_method_id="pm_1")
    assert browser.post(add, on).status_code == 302
    assert auto_recharge_of(member.account.id).enabled is True
    assert CreditAccount.objects.get(pk=member.account.id).low_balance_threshold == Decimal(10)

    change = reverse("admin:payments_autorechargesettings_change", args=[member.account.id])
    response = browser.post(change, {"threshold_usd": "10", "amount_usd": "5000", "spending_limit_usd": ""})
    assert response.status_code == 200 and "amount_usd" in response.context["adminform"].form.errors  # top-up range
    assert browser.post(change, {"threshold_usd": "10", "amount_usd": "20", "spending_limit_usd": ""}).status_code == 302
    assert auto_recharge_of(member.account.id).enabled is False  # the checkbox left out: off
    assert CreditAccount.objects.get(pk=member.account.id).low_balance_threshold is None

    Recharge.objects.create(account_id=member.account.id, amount_usd=Decimal(20), credits=Decimal(20),
                            provider_customer_id="cus_1", provider_payment_method_id="pm_1",
                            status=RechargeStatus.FAILED, failure_reason=RechargeFailure.GAVE_UP)
    listing = browser.get(reverse("admin:payments_recharge_changelist"), {"failure_reason": "gave_up"})
    assert listing.status_code == 200 and str(member.account) in listing.content.decode()
    assert browser.get(reverse("admin:payments_savedpaymentmethod_changelist")).status_code == 200
