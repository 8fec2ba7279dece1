"""A real Celery worker against a real Redis server (both started here): the auto-recharge task sent through
the broker charges the saved card on localstripe and records the PaymentIntent in the test database. The test
waits on what it can see, never on the clock: the worker's backend blocking on the account's lock (``pg_locks``),
then the task's result (Redis is also the result backend)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from decimal import Decimal
from urllib.parse import quote

import pytest
from celery import Celery
from django.db import connection, connections, transaction

from credits.locks import account_lock
from credits.models import CreditAccount, LedgerEntry, TransactionType
from credits.services import credits_debit
from payments import recharge as recharge_service
from payments.recharge_models import Recharge, RechargeStatus
from tests.conftest import make_member
from tests.payments.conftest import deliver
from tests.payments.local_servers import (  # noqa: F401 - fixtures
    ROOT,
    SECRET_KEY,
    LocalStripe,
    localstripe,
    start_redis,
    stop,
    stripe_settings,
)
from tests.payments.recharge_support import auto_recharge_of
from tests.payments.test_auto_recharge import intent_event
from tests.waits import wait_for_lock_waiters

pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    """The test database, as a URL a worker process can use."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else "")
    host = quote(db.get("HOST") or "", safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"


def on_another_connection(work: Callable[[], None]) -> None:
    """Runs ``work`` on a connection of its own and waits for it: ``pg_stat_activity`` is read once per transaction,
    so polling it inside the test's open transaction would never see the worker arrive."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - raised below
            failures.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


def test_a_real_worker_on_redis_charges_the_recharge(platform, stripe_settings: LocalStripe):  # noqa: ANN001, F811
    member = make_member(platform, "ada", credits="15")
    credits_debit(account_id=member.account.id, amount=Decimal(6))  # 9 left, before auto-recharge is on
    customer, method = stripe_settings.customer_with_card()
    recharge_service.payment_method_save(account_id=member.account.id, customer_id=customer, payment_method_id=method)
    recharge_service.auto_recharge_update(account_id=member.account.id, enabled=True,
                                          threshold_usd=Decimal(10), amount_usd=Decimal(20))

    with tempfile.TemporaryDirectory() as workdir:
        redis, broker = start_redis(workdir)
        env = {
            **os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": broker, "CONN_MAX_AGE": "0",
            "STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_API_BASE": stripe_settings.url,
            "STRIPE_MAX_NETWORK_RETRIES": "0", "LOG_LEVEL": "WARNING",
            "CELERY_RESULT_BACKEND": broker,  # read by Celery itself: the test waits for the task's result
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "billing_service", "worker", "--pool=solo", "--concurrency=1",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        failure: BaseException | None = None
        try:
            sender = Celery(broker=broker, backend=broker)
            with transaction.atomic():  # the account locked here: the worker's recharge_start must wait for it
                account_lock(account_id=member.account.id)
                sent = sender.send_task("payments.tasks.recharge_charge_task", args=[str(member.account.id)])
                # the worker took the task and waits for the account (the race happened)
                on_another_connection(lambda: wait_for_lock_waiters(1, timeout=60))
                assert not Recharge.objects.filter(account_id=member.account.id).exists()
            recharge_id = sent.get(timeout=60)
        except Exception as exc:  # noqa: BLE001 - raised below, with what the worker said
            failure = exc
        finally:
            stop(worker)
            output = worker.stdout.read().decode(errors="replace") if worker.stdout else ""
            stop(redis)
        assert failure is None, f"{failure!r}\n{output}"
        recharge = Recharge.objects.get(pk=recharge_id)
        assert recharge.status == RechargeStatus.PROCESSING
        assert recharge.provider_payment_id.startswith("pi_"), output
    assert stripe_settings.forwarded[f"recharge:{recharge.id}"] == 1
    assert auto_recharge_of(member.account.id).last_triggered_at is not None
    event = intent_event(stripe_settings.payment_intent(recharge.provider_payment_id))
    for _ in range(2):
        assert deliver(event).status_code == 200
    rows = LedgerEntry.objects.filter(account_id=member.account.id, transaction_type=TransactionType.ADD,
                                      reference=f"recharge:{recharge.id}")
    assert rows.count() == 1
    assert CreditAccount.objects.get(pk=member.account.id).balance == Decimal(29)
