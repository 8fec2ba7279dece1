"""Auto-recharge upkeep: a processing recharge whose webhook never came is read back from Stripe (localstripe) and
settled as the webhook would have, once; a pending one whose sends keep failing is given up after
``MAX_CHARGE_ATTEMPTS``."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings

from credits.models import CreditAccount
from payments import recharge as recharge_service
from payments.recharge_models import Recharge, RechargeFailure, RechargeStatus
from payments.tasks import recharges_reconcile, recharges_resume
from tests.conftest import make_member
from tests.payments import local_servers
from tests.payments.conftest import deliver
from tests.payments.local_servers import LocalStripe
from tests.payments.recharge_support import auto_recharge_of, auto_recharge_set, payment_intents  # noqa: F401
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


def localstripe_call(stripe: LocalStripe, method: str, path: str, body: bytes = b"",
                     headers: Mapping[str, str] | None = None) -> tuple[int, dict]:
    """A request straight to localstripe, past the front (whose routes a test may have taken over)."""
    request = urllib.request.Request(stripe.backend_url + path, data=body or None, method=method)
    for name in ("Authorization", "Content-Type", "Stripe-Version"):
        if headers and headers.get(name):
            request.add_header(name, headers[name])
    if not (headers and headers.get("Authorization")):
        request.add_header("Authorization", f"Bearer {local_servers.SECRET_KEY}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


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

    def create_answering_processing(body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        status, answer = localstripe_call(stripe_settings, "POST", "/v1/payment_intents", body, headers)
        assert status == 402  # localstripe declines at once and records the PaymentIntent, but names none
        _, intents = localstripe_call(stripe_settings, "GET", "/v1/payment_intents?limit=100")
        recharge_id = urllib.parse.parse_qs(body.decode())["metadata[recharge_id]"][0]
        intent = next(i for i in intents["data"] if i["metadata"].get("recharge_id") == recharge_id)
        return 200, json.dumps(intent | {"status": "processing"}).encode()  # what Stripe answered: processing

    monkeypatch.setitem(stripe_settings.routes, ("POST", "/v1/payment_intents"), create_answering_processing)
    debit(member, "6", django_capture_on_commit_callbacks)
    monkeypatch.undo()
    recharge = Recharge.objects.get()
    assert recharge.status == RechargeStatus.PROCESSING
    intent = stripe_settings.payment_intent(recharge.provider_payment_id)
    assert intent["status"] == "requires_payment_method"
    age(recharge, STALE)

    assert recharges_reconcile() == 1
    recharge.refresh_from_db()
    assert (recharge.status, recharge.last_error) == (RechargeStatus.FAILED, "Your card was declined.")
    assert recharge.failure_reason == RechargeFailure.DECLINED
    assert recharge.settled_at is not None and not add_rows(member.account.id)
    assert auto_recharge_of(member.account.id).enabled is True  # one decline only
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

    for status in ("processing", "requires_action"):  # what Stripe answers for the PaymentIntent now
        def retrieve(body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
            code, intent = localstripe_call(stripe_settings, "GET", f"/v1/payment_intents/{intent_id}", b"", headers)
            return code, json.dumps(intent | {"status": status}).encode()  # noqa: B023

        monkeypatch.setitem(stripe_settings.routes, ("GET", f"/v1/payment_intents/{intent_id}"), retrieve)
        assert recharges_reconcile() == 0
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.PROCESSING and not add_rows(member.account.id)

    monkeypatch.undo()  # Stripe answers again: settled on the next run
    assert recharges_reconcile() == 1
    assert Recharge.objects.get().status == RechargeStatus.SUCCEEDED and len(add_rows(member.account.id)) == 1


def test_a_recharge_whose_sends_keep_failing_is_given_up_after_max_attempts(platform, payment_intents):
    member = make_member(platform, "ada")
    recharge = _pending_recharge(member, payment_intents)  # sent once: a provider error
    sends = payment_intents.answer("error")  # Stripe keeps answering 500
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
    assert recharge.failure_reason == RechargeFailure.GAVE_UP
    assert "sends failed at the provider" in recharge.last_error
    assert recharges_resume() == 0 and len(sends) == recharge_service.MAX_CHARGE_ATTEMPTS
    assert auto_recharge_of(member.account.id).enabled is True  # one failure so far

    # Sent, so perhaps charged: it still counts against the month's limit.
    auto_recharge_set(member.account.id, spending_limit_usd=Decimal(15))
    assert recharge_service.recharge_start(account_id=member.account.id) is None  # 10 + 10 > 15
    auto_recharge_set(member.account.id, spending_limit_usd=Decimal(20))
    assert recharge_service.recharge_start(account_id=member.account.id) is not None


def test_debits_do_not_resend_a_sent_recharge_only_the_resume_does(platform, payment_intents):
    """Every debit below the threshold asks for a recharge; one already sent (its answer lost) is the resume's to
    retry, spaced out, so that a provider outage does not turn each debit into another send."""
    member = make_member(platform, "ada")
    recharge = _pending_recharge(member, payment_intents)  # sent once: a provider error
    sends = payment_intents.answer("succeeded")

    for _ in range(5):
        assert recharge_service.recharge_start(account_id=member.account.id) is None

    recharge.refresh_from_db()
    assert (recharge.status, recharge.attempts, sends) == (RechargeStatus.PENDING, 1, [])
