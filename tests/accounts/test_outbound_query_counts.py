"""Query-count baselines of the outbound webhooks' operations (as ``tests/test_query_counts.py`` pins the others'):
each listing counted with few rows and with many, the same number, so an N+1 cannot come back silently."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts import outbound
from accounts.outbound_models import OutboundDelivery, OutboundEvent
from tests.api_helpers import post_json
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

# SQL statements per request through Django's connection, by operation id.
QUERIES = {
    "billing_admin_webhook_endpoints_list": 1,
    "billing_admin_webhook_endpoints_create": 4,
    "billing_admin_webhook_endpoints_retrieve": 1,
    "billing_admin_webhook_endpoints_update": 4,
    "billing_admin_webhook_endpoints_partial_update": 4,
    "billing_admin_webhook_endpoints_rotate_secret": 4,
    "billing_admin_webhook_deliveries_list": 2,
    "billing_admin_webhook_deliveries_retrieve": 2,
    "billing_admin_webhook_deliveries_redeliver": 10,
    "billing_admin_balance_alerts_retrieve": 1,
    "billing_admin_balance_alerts_update": 4,
}
SEVERAL = [2, 12]


@pytest.fixture(autouse=True)
def _no_dns(settings):  # noqa: ANN001, ANN202
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = True  # *.example.com needs no DNS here
ENDPOINTS = "/api/billing/admin/webhook-endpoints/"


def _endpoint(platform, n: int = 0):  # noqa: ANN001, ANN202
    return outbound.endpoint_create(platform=platform, url=f"https://h{n}.example.com/hook", events=["order.paid"])


def _deliveries(platform, endpoint, n: int) -> list[OutboundDelivery]:  # noqa: ANN001
    from django.utils import timezone

    now = timezone.now()
    rows = []
    for i in range(n):
        event = OutboundEvent.objects.create(platform=platform, type="order.paid", data={"i": i}, created_at=now,
                                             fanned_out=True)
        rows.append(OutboundDelivery.objects.create(event=event, endpoint=endpoint, stream=str(i), attempts=0,
                                                    next_attempt_at=now, created_at=now, status="failed"))
    return rows


def _counted(django_assert_num_queries, operation: str, call):  # noqa: ANN001, ANN202
    with django_assert_num_queries(QUERIES[operation]):
        return call()


@pytest.mark.parametrize("rows", SEVERAL)
def test_endpoints_list(django_assert_num_queries, platform, owner, rows):
    for n in range(rows):
        _endpoint(platform, n)
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_admin_webhook_endpoints_list",
                        lambda: client.get(ENDPOINTS))
    assert response.json()["count"] == rows


def test_endpoints_create_retrieve_update(django_assert_num_queries, platform, owner):
    client = client_for(owner)
    created = _counted(django_assert_num_queries, "billing_admin_webhook_endpoints_create", lambda: post_json(
        client, ENDPOINTS, {"url": "https://h.example.com/x", "events": ["order.paid"]}))
    assert created.status_code == 201
    url = f"{ENDPOINTS}{created.json()['id']}/"
    assert _counted(django_assert_num_queries, "billing_admin_webhook_endpoints_retrieve",
                    lambda: client.get(url)).status_code == 200
    body = {"url": "https://h.example.com/y", "events": ["order.paid", "balance.low"]}
    assert _counted(django_assert_num_queries, "billing_admin_webhook_endpoints_update",
                    lambda: client.put(url, body, format="json")).status_code == 200
    assert _counted(django_assert_num_queries, "billing_admin_webhook_endpoints_partial_update",
                    lambda: client.patch(url, {"active": False}, format="json")).status_code == 200
    assert _counted(django_assert_num_queries, "billing_admin_webhook_endpoints_rotate_secret",
                    lambda: client.post(f"{url}rotate-secret/")).status_code == 200


@pytest.mark.parametrize("rows", SEVERAL)
def test_deliveries_list_and_retrieve(django_assert_num_queries, platform, owner, rows):
    deliveries = _deliveries(platform, _endpoint(platform), rows)
    client = client_for(owner)
    listed = _counted(django_assert_num_queries, "billing_admin_webhook_deliveries_list",
                      lambda: client.get("/api/billing/admin/webhook-deliveries/"))
    assert listed.json()["count"] == rows
    one = _counted(django_assert_num_queries, "billing_admin_webhook_deliveries_retrieve",
                   lambda: client.get(f"/api/billing/admin/webhook-deliveries/{deliveries[0].pk}/"))
    assert one.status_code == 200


def test_deliveries_redeliver(django_assert_num_queries, platform, owner):
    delivery, = _deliveries(platform, _endpoint(platform), 1)  # to an unreachable host: the attempt fails fast
    delivery.endpoint.url = "https://127.0.0.1:9/hook"
    delivery.endpoint.save(update_fields=["url"])
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_admin_webhook_deliveries_redeliver",
                        lambda: client.post(f"/api/billing/admin/webhook-deliveries/{delivery.pk}/redeliver/"))
    assert response.status_code == 200 and response.json()["attempt_log"][0]["manual"] is True


def test_balance_alerts(django_assert_num_queries, platform, owner, member):
    client = client_for(owner)
    assert _counted(django_assert_num_queries, "billing_admin_balance_alerts_retrieve",
                    lambda: client.get("/api/billing/admin/balance-alerts/")).status_code == 200
    response = _counted(django_assert_num_queries, "billing_admin_balance_alerts_update", lambda: client.put(
        "/api/billing/admin/balance-alerts/", {"threshold": "5", "account_id": str(member.account.id)}, format="json"))
    assert response.json()["threshold"] == "5.00" and Decimal(response.json()["threshold"]) == 5
