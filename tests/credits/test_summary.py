"""GET /api/billing/summary/: balance, this month's usage and lifetime requests of an account."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from credits.models import CreditAccount
from credits.services import UsageInput, hold_create, usage_record
from tests.api_helpers import assert_utc, error_of
from tests.conftest import client_for
from tests.payments.recharge_support import auto_recharge_set
from tests.credits.test_usage_stats import STATS_FIELDS, STATS_URL, midnight, rollup, today

pytestmark = pytest.mark.django_db

SUMMARY_URL = "/api/billing/summary/"
SUMMARY_FIELDS = {
    "user_id",
    "account_id",
    "email",
    "credit_balance",
    "subscription",
    "usage_this_month",
    "total_requests_all_time",
    "account_created_at",
    "last_login_at",
}
BALANCE_FIELDS = {
    "user_id",
    "balance",
    "reserved",
    "available",
    "carried_remainder",
    "currency",
    "last_updated",
    "auto_reload_enabled",
    "auto_reload_threshold",
    "auto_reload_amount",
}


def summary(client, **params):  # noqa: ANN001, ANN003, ANN201
    response = client.get(SUMMARY_URL, params)
    assert response.status_code == 200, response.content[:500]
    return response.json()


def test_member_summary(member):
    user = member.user
    user.email = "mia@example.com"
    user.save(update_fields=["email"])
    hold_create(account_id=member.account.id, amount=Decimal("30.25"))
    account = CreditAccount.objects.get(pk=member.account.pk)
    body = summary(client_for(member))
    assert set(body) == SUMMARY_FIELDS
    assert body["user_id"] == user.pk
    assert body["account_id"] == str(account.pk)
    assert body["email"] == "mia@example.com"
    assert body["subscription"] is None
    balance = body["credit_balance"]
    assert set(balance) == BALANCE_FIELDS
    assert balance == {
        "user_id": user.pk,
        "balance": "100.00",
        "reserved": "30.25",
        "available": "69.75",
        "carried_remainder": "0.00",
        "currency": "USD",
        "last_updated": balance["last_updated"],
        "auto_reload_enabled": False,
        "auto_reload_threshold": None,
        "auto_reload_amount": None,
    }
    assert assert_utc(balance["last_updated"]) == account.last_entry_at
    assert assert_utc(body["account_created_at"]) == account.created_at
    assert body["last_login_at"] is None
    assert body["total_requests_all_time"] == 0
    usage = body["usage_this_month"]
    assert set(usage) == STATS_FIELDS
    assert (usage["period"], usage["total_requests"], usage["credits_consumed"]) == ("monthly", 0, "0.00")


def test_auto_reload_maps_the_auto_recharge_settings(member):
    auto_recharge_set(member.account.pk, enabled=True, threshold_usd=Decimal("5"), amount_usd=Decimal("25.5"))
    balance = summary(client_for(member))["credit_balance"]
    assert (
        balance["auto_reload_enabled"],
        balance["auto_reload_threshold"],
        balance["auto_reload_amount"],
    ) == (True, "5.00", "25.50")


def test_last_login_and_missing_email(member):
    moment = timezone.now() - timedelta(hours=3)
    user = member.user
    user.last_login, user.email = moment, ""
    user.save(update_fields=["last_login", "email"])
    body = summary(client_for(member))
    assert assert_utc(body["last_login_at"]) == moment
    assert body["email"] is None


def test_usage_this_month_is_the_stats_object_and_lifetime_counts_every_rollup(member):
    day = today()
    rollup(member, day, "/v1/chat", ok=3, failed=1, credits="0.75", tokens_in=10, tokens_out=20)
    rollup(member, day.replace(day=1), "/v1/embed", ok=2, credits="0.25")
    rollup(member, day.replace(day=1) - timedelta(days=1), "/v1/chat", ok=40, credits="4")  # last month
    rollup(member, day.replace(year=day.year - 3, day=1), "/v1/chat", ok=500, credits="50")  # years ago
    body = summary(client_for(member))
    usage = body["usage_this_month"]
    stats = client_for(member).get(STATS_URL).json()
    assert {k: v for k, v in usage.items() if k != "period_end"} == {
        k: v for k, v in stats.items() if k != "period_end"
    }
    assert abs(assert_utc(usage["period_end"]) - assert_utc(stats["period_end"])) < timedelta(minutes=1)
    assert (usage["total_requests"], usage["failed_requests"], usage["credits_consumed"]) == (6, 1, "1.00")
    assert usage["requests_by_endpoint"] == {"/v1/chat": 4, "/v1/embed": 2}
    assert assert_utc(usage["period_start"]) == midnight(day.replace(day=1))
    assert len(usage["buckets"]) == 1
    assert body["total_requests_all_time"] == 6 + 40 + 500


def test_only_the_callers_own_usage(member, other_member):
    rollup(other_member, today(), ok=7)
    body = summary(client_for(member))
    assert body["usage_this_month"]["total_requests"] == 0
    assert body["total_requests_all_time"] == 0
    assert summary(client_for(other_member))["total_requests_all_time"] == 7


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_name_an_account(request, role, member, platform):
    caller = request.getfixturevalue(role)
    rollup(member, today(), ok=2)
    body = summary(client_for(caller), account_id=str(member.account.pk))
    assert body["user_id"] == member.user.pk
    assert body["credit_balance"]["balance"] == "100.00"
    assert body["total_requests_all_time"] == 2
    own = summary(client_for(caller))
    assert own["user_id"] == caller.user.pk
    platform_account = CreditAccount.objects.get(platform=platform, user__isnull=True)
    body = summary(client_for(caller), account_id=str(platform_account.pk))
    assert (body["user_id"], body["email"], body["last_login_at"]) == (None, None, None)
    assert body["credit_balance"]["user_id"] is None
    assert body["usage_this_month"]["user_id"] is None
    assert body["account_id"] == str(platform_account.pk)


def test_who_may_see_which_summary(member, other_member, admin, outsider):
    error_of(
        client_for(member).get(SUMMARY_URL, {"account_id": str(other_member.account.pk)}),
        403,
        "admin_required",
    )
    error_of(
        client_for(member).get(SUMMARY_URL, {"account_id": str(member.account.pk)}), 403, "admin_required"
    )
    error_of(
        client_for(admin).get(SUMMARY_URL, {"account_id": str(outsider.account.pk)}), 404, "account_not_found"
    )
    error_of(client_for(admin).get(SUMMARY_URL, {"account_id": "nope"}), 400, "invalid")
    error_of(client_for(outsider, platform_key="acme").get(SUMMARY_URL), 403, "not_a_member")
    error_of(APIClient().get(SUMMARY_URL), 401, "not_authenticated")
    error_of(client_for(token="nope").get(SUMMARY_URL), 401, "authentication_failed")
    for method in ("post", "put", "patch", "delete"):
        error_of(getattr(client_for(member), method)(SUMMARY_URL, {}, format="json"), 405)


def test_recorded_usage_shows_in_the_summary(member, platform):
    usage_record(
        platform=platform,
        usage=UsageInput(
            account_id=member.account.id,
            request_id="r1",
            endpoint="/v1/chat",
            amount=Decimal("2.5"),
        ),
    )
    usage_record(
        platform=platform,
        usage=UsageInput(
            account_id=member.account.id,
            request_id="r2",
            endpoint="/v1/chat",
            amount=Decimal("1"),
            success=False,
        ),
    )
    usage_record(
        platform=platform,
        usage=UsageInput(
            account_id=member.account.id,
            request_id="r0",
            endpoint="/v1/chat",
            amount=Decimal("1"),
            occurred_at=midnight(today().replace(day=1)) - timedelta(days=400),
        ),
    )
    body = summary(client_for(member))
    assert body["credit_balance"]["balance"] == "96.50"
    assert body["credit_balance"]["available"] == "96.50"
    usage = body["usage_this_month"]
    assert (usage["total_requests"], usage["successful_requests"], usage["failed_requests"]) == (2, 1, 1)
    assert usage["credits_consumed"] == "2.50"
    assert body["total_requests_all_time"] == 3
    assert assert_utc(body["credit_balance"]["last_updated"]) <= timezone.now().astimezone(UTC)


# --- schema ------------------------------------------------------------------------------------------------


def test_schema_documents_the_summary(member, admin):
    from tests.test_service_endpoints import _check, _is_error_envelope

    schema = Client().get("/api/schema/?format=json").json()
    op = schema["paths"][SUMMARY_URL]["get"]
    assert op["operationId"] == "billing_summary_retrieve"
    assert op["summary"] and "subscription" in op["description"]
    assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == {"account_id"}
    for code in ("400", "401", "403", "404"):
        assert _is_error_envelope(schema, op["responses"][code])
    rollup(member, today(), ok=1, credits="0.5")
    _check(schema, SUMMARY_URL, "get", client_for(member).get(SUMMARY_URL))
    _check(
        schema, SUMMARY_URL, "get", client_for(admin).get(SUMMARY_URL, {"account_id": str(member.account.pk)})
    )
    platform_account = CreditAccount.objects.get(platform=member.platform, user__isnull=True)
    _check(
        schema,
        SUMMARY_URL,
        "get",
        client_for(admin).get(SUMMARY_URL, {"account_id": str(platform_account.pk)}),
    )
    _check(
        schema, SUMMARY_URL, "get", client_for(member).get(SUMMARY_URL, {"account_id": str(admin.account.pk)})
    )
    _check(schema, SUMMARY_URL, "get", client_for(admin).get(SUMMARY_URL, {"account_id": "x"}))
    _check(schema, SUMMARY_URL, "get", APIClient().get(SUMMARY_URL))


def test_summary_shows_the_current_subscription(member):
    from subscriptions.models import Plan
    from subscriptions.services import subscription_start

    plan = Plan.objects.create(
        platform=member.platform, slug="growth", name="Growth", price_monthly=2000, price_yearly=20000,
        credits_included="100",
    )
    subscription_start(account_id=member.account.id, plan_id=plan.id, billing_cycle="monthly", provider="manual")
    body = APIClient()
    body.credentials(HTTP_AUTHORIZATION=f"Token {member.token}")
    body = body.get("/api/billing/summary/").json()
    assert body["subscription"]["plan"]["slug"] == "growth"
    assert body["subscription"]["status"] in {"active", "trialing"}
