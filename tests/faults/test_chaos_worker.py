"""A Celery worker killed (kill -9) during an auto-recharge, at the worst moment: the charge reached the provider
(localstripe created the PaymentIntent) and its answer never came back, so nothing of it is recorded. After a new
worker runs the beat's resume, the recharge completes exactly once: one PaymentIntent at the provider (the resend
carries the same Stripe idempotency key, ``recharge:<id>``), one ledger credit when its webhook arrives (twice).

The worker and Redis are real processes (tests/payments/local_servers.py), localstripe is behind the front that
implements Stripe's idempotency keys; the front answers the first charge only once the worker is dead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from celery import Celery
from django.core.management import call_command
from django.utils import timezone

from credits.models import CreditAccount, LedgerEntry, TransactionType
from credits.services import credits_debit
from payments import recharge as recharge_service
from payments.recharge_models import Recharge, RechargeStatus
from tests.conftest import make_member
from tests.payments.conftest import deliver
from tests.payments.local_servers import ROOT, SECRET_KEY, LocalStripe, start_redis, stop
from tests.payments.test_auto_recharge import intent_event
from tests.payments.test_auto_recharge_worker import database_url

pytestmark = pytest.mark.django_db(transaction=True)

PAYMENT_INTENTS = ("POST", "/v1/payment_intents")


class ChargeThenHang:
    """localstripe's ``POST /v1/payment_intents``, answered late: the PaymentIntent is created at once (the card is
    charged), then the answer waits until ``release`` is set."""

    def __init__(self, backend_url: str) -> None:
        self.backend_url = backend_url
        self.charged = threading.Event()
        self.release = threading.Event()
        self.intents: list[str] = []

    def __call__(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        request = urllib.request.Request(self.backend_url + PAYMENT_INTENTS[1], data=body, method="POST")
        for name in ("Authorization", "Content-Type", "Stripe-Version"):
            if headers.get(name):
                request.add_header(name, headers[name])
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        self.intents.append(json.loads(payload).get("id", ""))
        self.charged.set()
        self.release.wait(60)
        return status, payload


def start_worker(env: dict[str, str], log) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "billing_service", "worker", "--pool=solo", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def test_a_worker_killed_during_the_charge_recharges_exactly_once(platform, stripe_settings: LocalStripe):  # noqa: ANN001
    member = make_member(platform, "ada", credits="15")
    credits_debit(account_id=member.account.id, amount=Decimal(6))  # 9 left, before auto-recharge is on
    customer, method = stripe_settings.customer_with_card()
    recharge_service.payment_method_save(account_id=member.account.id, customer_id=customer, payment_method_id=method)
    recharge_service.auto_recharge_update(account_id=member.account.id, enabled=True,
                                          threshold_usd=Decimal(10), amount_usd=Decimal(20))
    hang = ChargeThenHang(stripe_settings.backend_url)
    stripe_settings.routes[PAYMENT_INTENTS] = hang

    with tempfile.TemporaryDirectory() as workdir, open(os.path.join(workdir, "worker.log"), "w+b") as log:
        redis, broker = start_redis(workdir)
        env = {
            **os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": broker, "CONN_MAX_AGE": "0",
            "STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_API_BASE": stripe_settings.url,
            "STRIPE_MAX_NETWORK_RETRIES": "0", "STRIPE_TIMEOUT_SECONDS": "120", "LOG_LEVEL": "WARNING",
            "CELERY_RESULT_BACKEND": broker,
        }
        workers: list[subprocess.Popen] = []
        try:
            sender = Celery(broker=broker, backend=broker)
            workers.append(start_worker(env, log))
            sender.send_task("payments.tasks.recharge_charge_task", args=[str(member.account.id)])
            assert hang.charged.wait(60), "the worker never charged the card"
            # The worker waits for the provider's answer: the recharge is recorded as sent, the charge is not.
            recharge = Recharge.objects.get(account_id=member.account.id)
            assert (recharge.status, recharge.attempts, recharge.provider_payment_id) == (
                RechargeStatus.PENDING, 1, "")
            os.kill(workers[0].pid, signal.SIGKILL)
            assert workers[0].wait(timeout=30) == -signal.SIGKILL
            hang.release.set()  # the answer goes to a dead connection
            stripe_settings.routes.pop(PAYMENT_INTENTS)

            workers.append(start_worker(env, log))
            # The beat's recharges_resume takes the recharges left pending for a minute (recharge.recharges_stalled):
            # the minute is set back here rather than waited for.
            Recharge.objects.filter(pk=recharge.pk).update(updated_at=timezone.now() - timedelta(seconds=61))
            resumed = sender.send_task("payments.tasks.recharges_resume").get(timeout=60)
        finally:
            hang.release.set()
            stripe_settings.routes.pop(PAYMENT_INTENTS, None)
            for worker in workers:
                stop(worker)
            stop(redis)
            log.seek(0)
            output = log.read().decode(errors="replace")
    assert resumed == 1, output
    recharge.refresh_from_db()
    assert recharge.status == RechargeStatus.PROCESSING, output
    key = f"recharge:{recharge.id}"
    # one charge at the provider: sent twice with its key, passed to localstripe once, the same PaymentIntent
    assert (stripe_settings.keys[key], stripe_settings.forwarded[key]) == (2, 1)
    assert recharge.provider_payment_id == hang.intents[0] != ""

    event = intent_event(stripe_settings.payment_intent(recharge.provider_payment_id))
    for _ in range(2):
        assert deliver(event).status_code == 200
    credits = LedgerEntry.objects.filter(account_id=member.account.id, transaction_type=TransactionType.ADD,
                                         reference=key)
    assert credits.count() == 1
    assert CreditAccount.objects.get(pk=member.account.id).balance == Decimal(29)
    assert Recharge.objects.get(pk=recharge.pk).status == RechargeStatus.SUCCEEDED
    assert Recharge.objects.filter(account_id=member.account.id).count() == 1
    out = StringIO()
    call_command("verify_ledger", "--progress", "off", stdout=out)
    assert "0 with problems" in out.getvalue()
