"""Outbound webhooks through a real Celery worker on a real Redis (both started here) to a real HTTP receiver
(pytest-httpserver): events recorded while no worker runs are delivered once one does, in order per account, signed,
each once; a 5xx is retried by the worker itself until it succeeds. The test waits on what it can see (the
deliveries' rows), never orders anything with sleeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal

import pytest
from celery import Celery, current_app
from werkzeug import Response

from accounts import outbound
from accounts.outbound_models import DeliveryStatus, OutboundDelivery, OutboundEvent
from credits.services import UsageInput, alert_threshold_set, credits_grant, usage_record
from tests.payments.local_servers import ROOT, free_port, start_redis, stop
from tests.payments.test_auto_recharge_worker import database_url

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(condition, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_a_real_worker_delivers_what_was_recorded_while_it_was_down_then_retries(platform, member, admin, api,  # noqa: ANN001
                                                                                 httpserver, settings):
    settings.OUTBOUND_ALLOW_HTTP = settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = True  # the receiver is on localhost
    created = api(admin).post("/api/billing/admin/webhook-endpoints/", {
        "url": httpserver.url_for("/hook"), "events": ["balance.low", "balance.depleted"]}, format="json")
    secret = created.json()["secret"]
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    failures = {"left": 0}

    def answer(request):  # noqa: ANN001, ANN202
        if failures["left"]:
            failures["left"] -= 1
            return Response("busy", status=503)
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(answer)

    def spend(amount: str) -> None:
        usage_record(platform=platform, usage=UsageInput(account_id=member.account.id, request_id=uuid.uuid4().hex,
                                                         endpoint="/chat", amount=Decimal(amount)))

    # This process's sends go to a broker that is down (the worker's broker is not up yet): the events are recorded
    # with their changes and wait in the outbox.
    conf = current_app.conf
    saved = conf.task_always_eager, conf.broker_url
    conf.task_always_eager, conf.broker_url = False, f"redis://127.0.0.1:{free_port()}/0"
    try:
        _deliveries_through_a_worker(platform, member, httpserver, secret, failures, spend)
    finally:
        conf.task_always_eager, conf.broker_url = saved


def _deliveries_through_a_worker(platform, member, httpserver, secret, failures, spend) -> None:  # noqa: ANN001
    spend("60")  # low
    credits_grant(account_id=member.account.id, amount=Decimal(30), description="top-up")
    spend("40")  # low again
    spend("30")  # depleted
    assert OutboundEvent.objects.count() == 3 and not httpserver.log

    with tempfile.TemporaryDirectory() as workdir:
        redis, broker = start_redis(workdir)
        env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": broker, "CONN_MAX_AGE": "0",
               "LOG_LEVEL": "WARNING", "OUTBOUND_ALLOW_HTTP": "true", "OUTBOUND_ALLOW_PRIVATE_HOSTS": "true",
               "OUTBOUND_RETRY_BASE_SECONDS": "0.2"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "billing_service", "worker", "--pool=solo", "--concurrency=1",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        output = ""
        try:
            sender = Celery(broker=broker)
            sender.send_task("accounts.tasks.outbound_deliver_task")  # as the beat does
            wait_until(lambda: OutboundDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 3)
            sent = [json.loads(request.get_data()) for request, _ in httpserver.log]
            assert [body["type"] for body in sent] == ["balance.low", "balance.low", "balance.depleted"]
            assert len({body["id"] for body in sent}) == 3
            for request, _ in httpserver.log:
                assert outbound.signature_verify(secret=secret, header=request.headers["Billing-Signature"],
                                                 body=request.get_data())
            # a 5xx, retried by the worker on its own (a run scheduled at the retry's time)
            failures["left"] = 2
            credits_grant(account_id=member.account.id, amount=Decimal(100), description="top-up")
            spend("60")  # low: recorded by this process, delivered by the worker
            sender.send_task("accounts.tasks.outbound_deliver_task")
            wait_until(lambda: OutboundDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 4)
        finally:
            stop(worker)
            output = worker.stdout.read().decode(errors="replace") if worker.stdout else ""
            stop(redis)
    last = OutboundDelivery.objects.order_by("-id").first()
    assert last.attempts == 3, output  # two 503s, then the 200
    assert len(httpserver.log) == 6
