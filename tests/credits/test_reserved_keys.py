"""Idempotency keys in namespaces that never meet: a key a client chooses can never take a key the service
derives (the regression: an admin's adjustment sent with ``Idempotency-Key: period:<subscription>:<time>`` took
the key of the period's later grant, which then failed with a 500 until it was given up). And absurdly nested
JSON is a 400, not a 500."""

from decimal import Decimal

import pytest

from billing_service.idempotency import client_key
from credits.models import LedgerEntry
from credits.services import credits_grant, usage_record_batch
from credits.services.common import call_key
from credits.services.usage import UsageInput
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

# One example of every key the service derives, as the code writes them (payments: webhooks, plan periods,
# refunds, auto-recharge, Creem; credits: usage debits and holds).
DERIVED_KEYS = [
    "usage:r-1",
    "usage-sha256:" + "0" * 64,
    "order:7f7b6c4e-0000-4000-8000-000000000001",
    "recharge:7f7b6c4e-0000-4000-8000-000000000002",
    "period:7f7b6c4e-0000-4000-8000-000000000003:1767225600",
    "rollover:7f7b6c4e-0000-4000-8000-000000000003:1767225600",
    "refund:ch_123:500",
    "upgrade:7f7b6c4e-0000-4000-8000-000000000003:1767225600:pro",
    "creem:sub_123:2026-01-01T00:00:00+00:00",
    "checkin:2026-12-02",
    "creem:refund:ref_123",
]


def _adjust(admin, member, key: str):  # noqa: ANN001, ANN202
    return client_for(admin).post(
        "/api/billing/admin/credits/manual/",
        {"account_id": str(member.account.id), "amount": "1", "description": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


@pytest.mark.parametrize("derived", DERIVED_KEYS)
def test_a_client_key_equal_to_a_derived_key_never_takes_it(admin, member, derived):
    assert _adjust(admin, member, derived).status_code == 201
    # The service's own posting with that key is still the first with it.
    result = credits_grant(account_id=member.account.id, amount=Decimal("2"), idempotency_key=derived)
    assert result.replayed is False
    assert LedgerEntry.objects.filter(account=member.account, idempotency_key=client_key(derived)).count() == 1
    assert LedgerEntry.objects.filter(account=member.account, idempotency_key=derived).count() == 1


@pytest.mark.parametrize("key", ["r-1", "k" * 255, "client:x", "usage:r-1", "~!@#$%^&*()"])
def test_every_client_key_is_stored_in_the_client_namespace(key):
    stored = client_key(key)
    assert stored.startswith(("client:", "client-sha256:"))
    assert len(stored) <= 255
    assert stored not in DERIVED_KEYS
    assert not call_key(key).startswith("client")


def test_usage_after_a_client_keyed_adjustment_is_recorded(admin, member, platform):
    assert _adjust(admin, member, "r-1").status_code == 201
    [outcome] = usage_record_batch(
        platform=platform,
        events=[UsageInput(account_id=member.account.id, request_id="r-1", endpoint="/chat", amount=Decimal("2"))],
    )
    assert outcome.status == "recorded"


def test_a_usage_request_id_that_looks_like_a_derived_key_is_just_a_request_id(admin, member, platform):
    events = [UsageInput(account_id=member.account.id, request_id=key, endpoint="/chat", amount=Decimal("1"))
              for key in ("order:x", "client:x", "period:x")]
    assert [o.status for o in usage_record_batch(platform=platform, events=events)] == ["recorded"] * 3
    assert credits_grant(account_id=member.account.id, amount=Decimal("1"), idempotency_key="order:x").replayed is False


def test_deeply_nested_json_is_a_400(admin):
    body = '{"events": ' + "[" * 200_000 + "]" * 200_000 + "}"
    response = client_for(admin).generic(
        "POST", "/api/billing/usage/batch/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"malformed_request", "invalid"}
