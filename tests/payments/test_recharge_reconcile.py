"""Auto-recharge upkeep: a processing recharge whose webhook never came is read back from Stripe (localstripe) and
settled as the webhook would have, once; a pending one whose sends keep failing is given up after
``MAX_CHARGE_ATTEMPTS``."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings

from credits.models import CreditAccount
from payments import recharge as recharge_service
from payments.errors import PaymentProviderError
from payments.providers import stripe as stripe_provider
from payments.recharge_models import Recharge, RechargeStatus
from payments.tasks import recharges_reconcile, recharges_resume
from tests.conftest import make_member
from tests.payments import local_servers
from tests.payments.conftest import deliver
from tests.payments.local_servers import LocalStripe
from tests.payments.test_auto_recharge import (
    DECLINING_CARD,
    _pending_recharge,
    add_rows,
    debit,
    enabled_member,
    intent_event,
)

pytestmark = pytest.mark.django_db
localstripe, stripe_settings = local_servers.localstripe, local_servers.stripe_settings  # the fixtures

STALE = timedelta(seconds=recharge_service.RECONCILE_AFTER_SECONDS + 60)


def age(recharge: Recharge, by: timedelta) -> None:
    Recharge.objects.filter(pk=recharge.pk).update(updated_at=Recharge.objects.get(pk=recharge.pk).updated_at - by)


def test_the_reconcile_is_scheduled_by_the_beat():
    tasks = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"payments.tasks.recharges_reconcile", "payments.tasks.recharges_resume"} <= tasks


def test_a_processing_recharge_whose_webhook_never_came_is_credited_once_by_the_reconcile(
    platform, stripe_settings: LocalStripe, django_capture_on_commit_callbacks
):
    member = enabled_member(platform, stripe_settings)
    debit(member, "6", django_capture_on_commit_callbacks)  # 9 left: a real off-session PaymentIntent, succeeded
    recharge = Recharge.objects.get()
    assert recharge.status == RechargeStatus.PROCESSING  # its webhook is withheld
    assert recharges_reconcile() == 0  # not stale yet: the webhook may still come
    age(recharge, STALE)

    assert recharges_reconcile() == 1
    recharge.refresh_from_db()
    rows = add_rows(member.account.id)
    assert recharge.status == RechargeStatus.SUCCEEDED and len(rows) == 1 and recharge.ledger_entry_id == rows[0].id
    assert CreditAccount.objects.get(pk=member.account.id).balance == Decimal(29)

    # The webhook arrives after all (twice): nothing more.
    event = intent_event(stripe_settings.payment_intent(recharge.provider_payment_id))
    for _ in range(2):
        assert deliver(event).status_code == 200
    assert recharges_reconcile(older_than_seconds=0) == 0
    assert len(add_rows(member.account.id)) == 1
    assert CreditAccount.objects.get(pk=member.account.id).balance == Decimal(29)
    # The slot is free again: the next debit below the threshold starts a new recharge.
    debit(member, "20", django_capture_on_commit_callbacks)
    assert Recharge.objects.count() == 2


def test_a_processing_recharge_declined_at_stripe_is_failed_by_the_reconcile(
    platform, stripe_settings: LocalStripe, django_capture_on_commit_callbacks, monkeypatch
):
    """Stripe answered "processing" (as for a payment confirmed later), then declined it; the
    ``payment_intent.payment_failed`` webhook is lost."""
    member = enabled_member(platform, stripe_settings, card=DECLINING_CARD)
    real_create = stripe_provider.payment_intent_off_session_create

    def create_answering_processing(**kwargs):
        answer = real_create(**kwargs)
        assert answer.declined  # localstripe declines at once and records the PaymentIntent, but names none
        intents = stripe_settings.client().v1.payment_intents.list(params={"limit": 100}).to_dict()["data"]
        intent_id = next(i["id"] for i in intents if i["metadata"].get("recharge_id") == kwargs["metadata"]["recharge_id"])
        return stripe_provider.OffSessionCharge(intent_id, "processing", False)

    monkeypatch.setattr(stripe_provider, "payment_intent_off_session_create", create_answering_processing)
    debit(member, "6", django_capture_on_commit_callbacks)
    recharge = Recharge.objects.get()
    assert recharge.status == RechargeStatus.PROCESSING
    intent = stripe_settings.payment_intent(recharge.provider_payment_id)
    assert intent["status"] == "requires_payment_method"
    age(recharge, STALE)

    assert recharges_reconcile() == 1
    recharge.refresh_from_db()
    assert (recharge.status, recharge.last_error) == (RechargeStatus.FAILED, "Your card was declined.")
    assert recharge.settled_at is not None and not add_rows(member.account.id)
    assert CreditAccount.objects.get(pk=member.account.id).auto_recharge_enabled is True  # one decline only
    failed = intent_event(intent, "payment_intent.payment_failed")  # the late webhook: nothing more
    assert deliver(failed).status_code == 200
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.FAILED and not add_rows(member.account.id)


def test_a_recharge_stripe_has_not_settled_or_cannot_answer_for_is_left_for_the_next_run(
    platform, stripe_settings: LocalStripe, django_capture_on_commit_callbacks, monkeypatch
):
    member = enabled_member(platform, stripe_settings)
    debit(member, "6", django_capture_on_commit_callbacks)
    recharge = Recharge.objects.get()
    intent_id = recharge.provider_payment_id
    age(recharge, STALE)

    Recharge.objects.filter(pk=recharge.pk).update(provider_payment_id="pi_unknown_to_stripe")  # a 404 at Stripe
    assert recharges_reconcile() == 0
    Recharge.objects.filter(pk=recharge.pk).update(provider_payment_id=intent_id)

    for status in ("processing", "requires_action"):
        monkeypatch.setattr(stripe_provider, "payment_intent_retrieve",
                            lambda **kw: stripe_settings.payment_intent(intent_id) | {"status": status})  # noqa: B023
        assert recharges_reconcile() == 0
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.PROCESSING and not add_rows(member.account.id)

    monkeypatch.undo()  # Stripe answers again: settled on the next run
    assert recharges_reconcile() == 1
    assert Recharge.objects.get().status == RechargeStatus.SUCCEEDED and len(add_rows(member.account.id)) == 1


def test_a_recharge_whose_sends_keep_failing_is_given_up_after_max_attempts(platform, monkeypatch):
    member = make_member(platform, "ada")
    recharge = _pending_recharge(member, monkeypatch)  # sent once: a provider error
    sends: list = []

    def fail(**kwargs) -> None:
        sends.append(kwargs)
        raise PaymentProviderError(details={"provider": "stripe"})

    monkeypatch.setattr(stripe_provider, "payment_intent_off_session_create", fail)
    for _ in range(recharge_service.MAX_CHARGE_ATTEMPTS - 1):
        age(recharge, timedelta(minutes=5))
        assert recharges_resume() == 0
    recharge.refresh_from_db()
    assert (recharge.status, recharge.attempts) == (RechargeStatus.PENDING, recharge_service.MAX_CHARGE_ATTEMPTS)
    assert len(sends) == recharge_service.MAX_CHARGE_ATTEMPTS - 1

    age(recharge, timedelta(minutes=5))
    assert recharges_resume() == 0  # sent often, but less than an hour ago: sent again
    assert len(sends) == recharge_service.MAX_CHARGE_ATTEMPTS

    Recharge.objects.filter(pk=recharge.pk).update(created_at=recharge.created_at - timedelta(hours=2))
    age(recharge, timedelta(minutes=5))
    assert recharges_resume() == 1  # not sent again: given up
    recharge.refresh_from_db()
    assert len(sends) == recharge_service.MAX_CHARGE_ATTEMPTS
    assert recharge.status == RechargeStatus.FAILED and recharge.settled_at is not None
    assert recharge.last_error.startswith(recharge_service.GAVE_UP)
    assert recharges_resume() == 0 and len(sends) == recharge_service.MAX_CHARGE_ATTEMPTS
    assert CreditAccount.objects.get(pk=member.account.id).auto_recharge_enabled is True  # one failure so far

    # Sent, so perhaps charged: it still counts against the month's limit.
    CreditAccount.objects.filter(pk=member.account.id).update(auto_recharge_spending_limit_usd=Decimal(15))
    assert recharge_service.recharge_start(account_id=member.account.id) is None  # 10 + 10 > 15
    CreditAccount.objects.filter(pk=member.account.id).update(auto_recharge_spending_limit_usd=Decimal(20))
    assert recharge_service.recharge_start(account_id=member.account.id) is not None


def test_debits_do_not_resend_a_sent_recharge_only_the_resume_does(platform, monkeypatch):
    """Every debit below the threshold asks for a recharge; one already sent (its answer lost) is the resume's to
    retry, spaced out, so that a provider outage does not turn each debit into another send."""
    member = make_member(platform, "ada")
    recharge = _pending_recharge(member, monkeypatch)  # sent once: a provider error
    sends: list = []
    monkeypatch.setattr(stripe_provider, "payment_intent_off_session_create", lambda **kw: sends.append(kw))

    for _ in range(5):
        assert recharge_service.recharge_start(account_id=member.account.id) is None

    recharge.refresh_from_db()
    assert (recharge.status, recharge.attempts, sends) == (RechargeStatus.PENDING, 1, [])
