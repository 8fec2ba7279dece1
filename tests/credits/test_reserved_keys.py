"""Ledger keys the service derives for usage debits cannot be chosen by a client, so a client key can never
collide with a usage event's; and absurdly nested JSON is a 400, not a 500."""

from decimal import Decimal

from credits.models import Hold, LedgerEntry
from credits.services import usage_record_batch
from credits.services.usage import UsageInput
from tests.conftest import client_for


def test_manual_adjustment_refuses_a_usage_key(admin, member):
    response = client_for(admin).post(
        "/api/billing/admin/credits/manual/",
        {"account_id": str(member.account.id), "amount": "1", "description": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="usage:r-1",
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["details"]
    assert LedgerEntry.objects.filter(account=member.account).count() == 1


def test_reservation_refuses_a_usage_request_id(admin, member):
    response = client_for(admin).post(
        "/api/billing/reservations/",
        {"account_id": str(member.account.id), "amount": "1", "request_id": "usage:r-1"},
        format="json",
    )
    assert response.status_code == 400
    assert "request_id" in response.json()["error"]["details"]
    assert not Hold.objects.exists()


def test_usage_after_a_client_keyed_adjustment_is_recorded(admin, member, platform):
    assert client_for(admin).post(
        "/api/billing/admin/credits/manual/",
        {"account_id": str(member.account.id), "amount": "1", "description": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="r-1",
    ).status_code == 201
    [outcome] = usage_record_batch(
        platform=platform,
        events=[UsageInput(account_id=member.account.id, request_id="r-1", endpoint="/chat", amount=Decimal("2"))],
    )
    assert outcome.status == "recorded"


def test_deeply_nested_json_is_a_400(admin):
    body = '{"events": ' + "[" * 200_000 + "]" * 200_000 + "}"
    response = client_for(admin).generic(
        "POST", "/api/billing/usage/batch/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"malformed_request", "invalid"}
