"""Outbound webhooks: balance alerts recorded by the ledger's own statements (once per crossing, on every path that
writes a row), nothing for a rolled-back change, the endpoints' API, and delivery to a real HTTP receiver
(pytest-httpserver): signature, stable event id, retries after 5xx and timeouts, giving up, order per account,
redelivery. Without a broker (the tests' settings) the delivery task runs in-process once the change commits."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from werkzeug import Response

from accounts import outbound
from accounts.outbound_models import DeliveryStatus, OutboundAttempt, OutboundDelivery, OutboundEvent
from credits import ledger
from credits.ledger import Posting
from credits.models import CreditAccount
from credits.services import (
    UsageInput,
    alert_threshold_set,
    credits_debit,
    credits_grant,
    hold_create,
    usage_record,
    usage_record_batch,
)
from tests.api_helpers import error_of, invalid_field, post_json
from tests.conftest import make_member

ENDPOINTS = "/api/billing/admin/webhook-endpoints/"
DELIVERIES = "/api/billing/admin/webhook-deliveries/"
ALERTS = "/api/billing/admin/balance-alerts/"


def events_of(account_id) -> list[tuple[str, dict]]:  # noqa: ANN001
    return [(e.type, e.data) for e in OutboundEvent.objects.filter(account_id=account_id).order_by("id")]


def spend(platform, account_id, amount: str) -> None:  # noqa: ANN001
    usage_record(platform=platform, usage=UsageInput(account_id=account_id, request_id=str(uuid.uuid4()),
                                                     endpoint="/chat", amount=Decimal(amount)))


@pytest.fixture(autouse=True)
def _no_dns(settings):  # noqa: ANN001, ANN202
    """Endpoints named *.example.com need no DNS here (none is reachable); the tests of the host rule turn it on."""
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = True


@pytest.fixture
def receiver(httpserver, settings):  # noqa: ANN001, ANN201
    settings.OUTBOUND_ALLOW_HTTP = True
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = True  # the receiver listens on localhost
    settings.OUTBOUND_TIMEOUT_SECONDS = 2
    return httpserver


def register(admin, api, url: str, events: list[str]) -> dict:  # noqa: ANN001
    response = post_json(api(admin), ENDPOINTS, {"url": url, "events": events})
    assert response.status_code == 201, response.content
    return response.json()


# --- balance alerts: the rule, on every path -----------------------------------------------------------------


@pytest.mark.django_db
def test_balance_low_is_recorded_once_per_crossing_by_the_usage_statement(platform, member):
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    spend(platform, member.account.id, "40")  # 100 -> 60: above
    assert events_of(member.account.id) == []
    spend(platform, member.account.id, "20")  # 60 -> 40: crosses
    spend(platform, member.account.id, "5")  # 40 -> 35: already below, no second alert
    assert events_of(member.account.id) == [
        ("balance.low", {"user_id": member.membership.user_id, "available": Decimal("40.000000"),
                         "threshold": Decimal("50.000000")}),
    ]
    credits_grant(account_id=member.account.id, amount=Decimal(65), description="top-up")  # back to 100
    spend(platform, member.account.id, "100")  # 100 -> 0: crosses again, and depletes
    assert [t for t, _ in events_of(member.account.id)] == ["balance.low", "balance.low", "balance.depleted"]


@pytest.mark.django_db
def test_an_account_without_a_threshold_records_nothing(platform, member):
    spend(platform, member.account.id, "100")
    assert OutboundEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_threshold_of_zero_alerts_only_when_depleted(platform, member):
    alert_threshold_set(platform=platform, threshold=Decimal(0), account_id=member.account.id)
    spend(platform, member.account.id, "99.999999")
    assert events_of(member.account.id) == []
    credits_debit(account_id=member.account.id, amount=Decimal("0.000001"))
    assert [t for t, _ in events_of(member.account.id)] == ["balance.depleted"]


@pytest.mark.django_db
def test_batches_alert_by_the_same_rule_per_change(platform, member, other_member):
    alert_threshold_set(platform=platform, threshold=Decimal(30))  # the platform: both accounts
    events = [UsageInput(account_id=member.account.id, request_id=f"b{i}", endpoint="/chat", amount=Decimal(30))
              for i in range(4)]  # 100 -> 70 -> 40 -> 10 (crosses) -> refused (10 < 30)
    events.append(UsageInput(account_id=other_member.account.id, request_id="o", endpoint="/chat",
                             amount=Decimal(50)))  # 50 -> 0: crosses and depletes
    outcomes = usage_record_batch(platform=platform, events=events)
    assert [o.status for o in outcomes] == ["recorded", "recorded", "recorded", "rejected", "recorded"]
    assert events_of(member.account.id) == [
        ("balance.low", {"user_id": member.membership.user_id, "available": Decimal("10.000000"),
                         "threshold": Decimal("30.000000")}),
    ]
    assert [t for t, _ in events_of(other_member.account.id)] == ["balance.low", "balance.depleted"]


@pytest.mark.django_db
def test_a_hold_lowers_available_and_alerts_like_a_debit(platform, member):
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    hold_create(account_id=member.account.id, amount=Decimal(60))
    assert [t for t, _ in events_of(member.account.id)] == ["balance.low"]


@pytest.mark.django_db
def test_new_accounts_take_the_platforms_threshold(platform, api, admin):
    response = api(admin).put(ALERTS, {"threshold": "12.50"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["threshold"] == "12.50"
    newcomer = make_member(platform, "nia", credits="20")
    assert CreditAccount.objects.get(pk=newcomer.account.id).alert_threshold == Decimal("12.5")
    assert api(admin).get(ALERTS).json() == {"account_id": None, "threshold": "12.50"}


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_leaves_no_event(platform, member):
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    with pytest.raises(RuntimeError), transaction.atomic():
        ledger.post(member.account.id, Posting("subtract", balance_delta=Decimal(-80)))
        assert OutboundEvent.objects.count() == 1  # written with the change...
        raise RuntimeError("the change fails after its debit")
    assert OutboundEvent.objects.count() == 0  # ...and gone with it
    assert CreditAccount.objects.get(pk=member.account.id).balance == Decimal(100)


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({"threshold": "-1"}, "threshold"),
    ({"threshold": "NaN"}, "threshold"),
    ({"threshold": "Infinity"}, "threshold"),
    ({"threshold": "1.0000001"}, "threshold"),
    ({"threshold": "1e30"}, "threshold"),
    ({"threshold": True}, "threshold"),
    ({}, "threshold"),
    ({"threshold": "1", "account_id": "nope"}, "account_id"),
    ({"threshold": "1", "colour": "red"}, "colour"),
])
def test_bad_thresholds_are_refused_and_change_nothing(platform, api, admin, member, body, field):
    invalid_field(api(admin).put(ALERTS, body, format="json"), field)
    assert CreditAccount.objects.get(pk=member.account.id).alert_threshold is None


@pytest.mark.django_db
def test_thresholds_are_for_admins_of_the_platform(platform, api, member, admin, outsider):
    error_of(api(member).put(ALERTS, {"threshold": "1"}, format="json"), 403, "admin_required")
    # another platform's account is unknown here
    error_of(api(outsider).put(ALERTS, {"threshold": "1", "account_id": str(member.account.id)}, format="json"),
             404, "account_not_found")
    assert CreditAccount.objects.get(pk=member.account.id).alert_threshold is None


# --- endpoints ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_endpoints_secret_is_shown_once(api, admin, settings):
    created = post_json(api(admin), ENDPOINTS, {"url": "https://hooks.example.com/billing",
                                                "events": ["balance.low", "order.paid"]})
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["balance.low", "order.paid"]
    shown = api(admin).get(f"{ENDPOINTS}{body['id']}/").json()
    assert "secret" not in shown and shown["url"] == "https://hooks.example.com/billing"
    assert all("secret" not in row for row in api(admin).get(ENDPOINTS).json()["results"])
    rotated = api(admin).post(f"{ENDPOINTS}{body['id']}/rotate-secret/").json()
    assert rotated["secret"] != body["secret"]
    off = api(admin).patch(f"{ENDPOINTS}{body['id']}/", {"active": False}, format="json")
    assert off.status_code == 200 and off.json()["active"] is False
    assert api(admin).delete(f"{ENDPOINTS}{body['id']}/").status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({"url": "http://hooks.example.com", "events": ["order.paid"]}, "url"),  # https only
    ({"url": "not a url", "events": ["order.paid"]}, "url"),
    ({"url": "https://h.example.com", "events": []}, "events"),
    ({"url": "https://h.example.com", "events": ["order.lost"]}, "events"),
    ({"url": "https://h.example.com", "events": "order.paid"}, "events"),
    ({"url": "https://h.example.com", "events": [7]}, "events"),
    ({"url": "https://h.example.com", "events": ["order.paid"], "active": "yes"}, "active"),
    ({"url": "https://h.example.com", "events": ["order.paid"], "secret": "mine"}, "secret"),
])
def test_bad_endpoints_are_refused(api, admin, body, field):
    invalid_field(post_json(api(admin), ENDPOINTS, body), field)
    assert not OutboundDelivery.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://localhost:8443/hook", "https://10.0.0.5/x", "https://192.168.1.1/x",
    "https://169.254.169.254/latest/meta-data/", "https://[::1]/x", "https://0.0.0.0/x",
])
def test_endpoints_on_the_services_own_network_are_refused(api, admin, url, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = False
    response = post_json(api(admin), ENDPOINTS, {"url": url, "events": ["order.paid"]})
    assert "public address" in invalid_field(response, "url")["details"]["url"][0]


@pytest.mark.django_db
def test_an_endpoint_whose_host_does_not_resolve_is_refused(api, admin, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = False
    response = post_json(api(admin), ENDPOINTS, {"url": "https://hooks.invalid/x", "events": ["order.paid"]})
    assert "resolve" in invalid_field(response, "url")["details"]["url"][0]


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_whose_host_turned_private_is_not_sent_to(platform, member, admin, api, receiver, settings):
    register(admin, api, receiver.url_for("/hook"), ["balance.low"])
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = False  # as if its name now resolved to the service's network
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    spend(platform, member.account.id, "60")
    assert not receiver.log
    attempt = OutboundAttempt.objects.get()
    assert attempt.status_code is None and attempt.error.startswith("not sent: ")


@pytest.mark.django_db(transaction=True)
def test_a_deactivated_endpoint_gets_nothing_until_it_is_active_again(platform, member, admin, api, receiver):
    endpoint = register(admin, api, receiver.url_for("/hook"), ["balance.low"])
    api(admin).patch(f"{ENDPOINTS}{endpoint['id']}/", {"active": False}, format="json")
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    spend(platform, member.account.id, "60")  # no delivery: the endpoint was off when the event was fanned out
    api(admin).patch(f"{ENDPOINTS}{endpoint['id']}/", {"active": True}, format="json")
    assert OutboundDelivery.objects.count() == 0 and not receiver.log
    receiver.expect_request("/hook").respond_with_data("no", status=500)
    credits_grant(account_id=member.account.id, amount=Decimal(60), description="top-up")
    spend(platform, member.account.id, "60")  # a delivery, failed once, pending
    api(admin).patch(f"{ENDPOINTS}{endpoint['id']}/", {"active": False}, format="json")
    run = outbound.outbound_deliver(now=timezone.now() + timedelta(hours=1))
    assert (run.delivered, run.retrying, run.next_due_in) == (0, 0, None)  # off: not sent, nothing due
    assert len(receiver.log) == 1


@pytest.mark.django_db
def test_endpoints_are_for_admins_of_their_platform(api, admin, member, outsider):
    endpoint = register(admin, api, "https://h.example.com/x", ["order.paid"])
    error_of(api(member).get(ENDPOINTS), 403, "admin_required")
    error_of(post_json(api(member), ENDPOINTS, {"url": "https://e.example.com", "events": ["order.paid"]}), 403)
    error_of(api(outsider).get(f"{ENDPOINTS}{endpoint['id']}/"), 404, "webhook_endpoint_not_found")
    error_of(api(outsider).patch(f"{ENDPOINTS}{endpoint['id']}/", {"active": False}, format="json"), 404)
    assert api(outsider).get(ENDPOINTS).json()["count"] == 0


# --- delivery to a real receiver ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_alert_is_delivered_signed_once_the_debit_commits(platform, member, admin, api, receiver):
    endpoint = register(admin, api, receiver.url_for("/hook"), ["balance.low", "balance.depleted"])
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    spend(platform, member.account.id, "60")  # the task runs once the statement commits (no broker here)
    (request, response), = receiver.log
    assert response.status_code == 200
    assert outbound.signature_verify(secret=endpoint["secret"], header=request.headers["Billing-Signature"],
                                     body=request.get_data())
    assert not outbound.signature_verify(secret="whsec_other", header=request.headers["Billing-Signature"],
                                         body=request.get_data())
    body = json.loads(request.get_data())
    event = OutboundEvent.objects.get()
    assert request.headers["Billing-Event-Id"] == body["id"] == f"evt_{event.event_id.hex}"
    assert body["type"] == "balance.low" and body["platform"] == "acme"
    assert body["data"] == {"user_id": member.membership.user_id, "username": "mia", "available": "40.00",
                            "threshold": "50.00", "account_id": str(member.account.id)}
    delivery = OutboundDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 1, 200)


@pytest.mark.django_db(transaction=True)
def test_a_5xx_is_retried_with_back_off_and_the_same_event_id(platform, member, admin, api, receiver):
    register(admin, api, receiver.url_for("/hook"), ["balance.low"])
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    answers = iter([Response("down", status=503), Response("ok", status=200)])
    receiver.expect_request("/hook").respond_with_handler(lambda request: next(answers))
    spend(platform, member.account.id, "60")
    delivery = OutboundDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.PENDING, 1, 503)
    first_try = OutboundAttempt.objects.get().attempted_at
    assert delivery.next_attempt_at - first_try == timedelta(seconds=30)
    assert outbound.outbound_deliver(now=first_try + timedelta(seconds=10)).delivered == 0  # not due yet
    run = outbound.outbound_deliver(now=first_try + timedelta(seconds=31))
    assert run.delivered == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)
    ids = {request.headers["Billing-Event-Id"] for request, _ in receiver.log}
    assert len(receiver.log) == 2 and len(ids) == 1  # at least once, one event id


@pytest.mark.django_db(transaction=True)
def test_a_timeout_is_an_attempt_that_failed(platform, member, admin, api, receiver, settings):
    settings.OUTBOUND_TIMEOUT_SECONDS = 0.3
    register(admin, api, receiver.url_for("/slow"), ["balance.low"])
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)

    def slow(request):  # noqa: ANN001, ANN202
        time.sleep(1)  # the receiver is slower than the timeout
        return Response("late")

    receiver.expect_request("/slow").respond_with_handler(slow)
    spend(platform, member.account.id, "60")
    attempt = OutboundAttempt.objects.get()
    assert attempt.status_code is None and "Timeout" in attempt.error
    assert OutboundDelivery.objects.get().status == DeliveryStatus.PENDING


@pytest.mark.django_db(transaction=True)
def test_a_delivery_fails_after_the_retry_period_and_can_be_redelivered(platform, member, admin, api, receiver,
                                                                        settings):
    settings.OUTBOUND_RETRY_FOR_SECONDS = 3600
    register(admin, api, receiver.url_for("/hook"), ["balance.low"])
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    receiver.expect_request("/hook").respond_with_data("no", status=500)
    spend(platform, member.account.id, "60")
    event = OutboundEvent.objects.get()
    at = event.created_at
    for _ in range(12):  # 30 s, 1, 2, 4 ... min: past an hour within a dozen tries
        delivery = OutboundDelivery.objects.get()
        if delivery.status != DeliveryStatus.PENDING:
            break
        at = delivery.next_attempt_at + timedelta(seconds=1)
        outbound.outbound_deliver(now=at)
    delivery = OutboundDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == OutboundAttempt.objects.count() > 3
    receiver.clear()
    receiver.expect_request("/hook").respond_with_data("ok")
    response = api(admin).post(f"{DELIVERIES}{delivery.pk}/redeliver/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "delivered" and body["attempt_log"][0]["manual"] is True
    assert body["attempt_log"][0]["status_code"] == 200 and len(body["attempt_log"]) == delivery.attempts + 1


@pytest.mark.django_db(transaction=True)
def test_one_accounts_events_go_out_in_order_and_wait_for_an_earlier_one(platform, member, other_member, admin,
                                                                          api, receiver):
    register(admin, api, receiver.url_for("/hook"), ["balance.low", "balance.depleted"])
    alert_threshold_set(platform=platform, threshold=Decimal(50))
    failing = {"first": True}

    def answer(request):  # noqa: ANN001, ANN202
        body = json.loads(request.get_data())
        if body["data"]["account_id"] == str(member.account.id) and failing["first"]:
            failing["first"] = False
            return Response("busy", status=500)
        return Response("ok")

    receiver.expect_request("/hook").respond_with_handler(answer)
    spend(platform, member.account.id, "60")  # mia: low (refused by the receiver once)
    spend(platform, member.account.id, "40")  # mia: depleted: waits behind her first
    spend(platform, other_member.account.id, "10")  # max: low: his own stream, not held up
    sent = [(json.loads(r.get_data())["data"]["username"], json.loads(r.get_data())["type"]) for r, _ in receiver.log]
    assert sent == [("mia", "balance.low"), ("max", "balance.low")]
    later = timezone.now() + timedelta(seconds=31)
    outbound.outbound_deliver(now=later)
    sent = [(json.loads(r.get_data())["data"]["username"], json.loads(r.get_data())["type"]) for r, _ in receiver.log]
    assert sent[2:] == [("mia", "balance.low"), ("mia", "balance.depleted")]
    assert set(OutboundDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}


@pytest.mark.django_db(transaction=True)
def test_deliveries_are_listed_with_their_attempts_for_the_platforms_admins(platform, member, admin, api, receiver,
                                                                           outsider):
    register(admin, api, receiver.url_for("/hook"), ["balance.low"])
    alert_threshold_set(platform=platform, threshold=Decimal(50), account_id=member.account.id)
    receiver.expect_request("/hook").respond_with_data("ok")
    spend(platform, member.account.id, "60")
    listed = api(admin).get(DELIVERIES, {"status": "delivered"}).json()
    assert listed["count"] == 1
    row = listed["results"][0]
    assert row["event_type"] == "balance.low" and row["attempt_log"][0]["status_code"] == 200
    assert api(admin).get(DELIVERIES, {"status": "failed"}).json()["count"] == 0
    invalid_field(api(admin).get(DELIVERIES, {"status": "lost"}), "status")
    assert api(outsider).get(DELIVERIES).json()["count"] == 0
    error_of(api(outsider).post(f"{DELIVERIES}{row['id']}/redeliver/"), 404, "webhook_delivery_not_found")
    error_of(api(admin).get(f"{DELIVERIES}99999999999999999999999/"), 404)


@pytest.mark.django_db
def test_an_event_with_a_dedupe_key_is_recorded_once(platform, admin, api):
    register(admin, api, "https://h.example.com/x", ["budget.exceeded"])
    for _ in range(2):
        outbound.event_record(platform_id=platform.pk, type="budget.exceeded", data={"budget": "weekly"},
                              dedupe_key="budget.exceeded:w1")
    assert OutboundEvent.objects.count() == 1


@pytest.mark.django_db
def test_an_event_no_endpoint_listens_to_is_not_recorded(platform, admin, api):
    register(admin, api, "https://h.example.com/x", ["balance.low"])
    assert outbound.event_record(platform_id=platform.pk, type="order.paid", data={}) is False
    assert not OutboundEvent.objects.exists()


def test_the_signature_is_stripes_scheme():
    header = outbound.signature(secret="whsec_test", timestamp=1_700_000_000, body=b'{"a":1}')
    expected = hmac.new(b"whsec_test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert outbound.signature_verify(secret="whsec_test", header=header, body=b'{"a":1}', now=1_700_000_100)
    assert not outbound.signature_verify(secret="whsec_test", header=header, body=b'{"a":2}', now=1_700_000_100)
    assert not outbound.signature_verify(secret="whsec_test", header=header, body=b'{"a":1}', now=1_700_001_000)
    assert not outbound.signature_verify(secret="whsec_test", header="garbage", body=b"{}")
