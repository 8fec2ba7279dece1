"""Query-count baselines: the number of SQL statements of a typical request, per operation of the OpenAPI
schema (the payments operations are in ``tests/payments/test_query_counts.py``, the entitlements ones in
``tests/entitlements/test_api_query_counts.py``).

A listing is counted with a few rows and with many: the same number, so an N+1 cannot come back silently.
When a change to a service moves a count on purpose, update its number in ``QUERIES`` (one line); the
failure lists every statement the request ran."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from credits.services import credits_grant
from credits.services.checkin import checkin, checkin_config_set
from tests.api_helpers import post_json
from tests.conftest import Member, client_for, make_member
from tests.subscriptions.conftest import make_plan, start

pytestmark = pytest.mark.django_db

# SQL statements per request through Django's connection, by operation id. (Token authentication and the
# caller's memberships are prepared statements on the raw connection, the same in every request: not counted.)
QUERIES = {
    "billing_transactions_list": 2,
    "billing_transactions_list_cursor": 2,
    "billing_admin_credits_transactions_list": 1,
    "billing_admin_credits_manual_create": 1,
    "billing_usage_create": 2,
    "billing_checkin_create": 0,  # one prepared read, then the grant's one raw statement (sql.CHECKIN_GRANT): uncounted
    "billing_checkin_retrieve": 2,
    "billing_admin_checkin_config_retrieve": 2,
    "billing_admin_checkin_config_update": 9,
    "billing_usage_batch_create": 3,
    "billing_usage_stats_retrieve": 2,
    "billing_reservations_list": 1,
    "billing_reservations_create": 9,  # the account locked first (is it funded by a seat?), its request_id looked up
    "billing_reservations_retrieve": 1,
    "billing_reservations_capture": 8,
    "billing_reservations_release": 7,
    "billing_admin_models_list": 2,
    "billing_admin_models_create": 9,
    "billing_admin_models_retrieve": 1,
    "billing_plans_list": 2,
    "billing_admin_plans_list": 1,
    "billing_admin_plans_create": 7,
    "billing_admin_plans_retrieve": 1,
    "billing_admin_plans_update": 10,
    "billing_admin_plans_partial_update": 10,
    "billing_subscription_retrieve": 2,
    "billing_account_retrieve": 5,
    "billing_account_partial_update": 9,
    "billing_summary_retrieve": 5,
}

SEVERAL = [2, 12]  # rows in a listing: the same count of queries for both


def _funded(member: Member, amount: str = "1000") -> None:
    credits_grant(account_id=member.account.id, amount=Decimal(amount), description="test funds")


def _usage(member: Member, request_id: str) -> dict:
    return {"account_id": str(member.account.id), "request_id": request_id, "endpoint": "/v1/chat",
            "amount": "0.25"}


def _counted(django_assert_num_queries, operation: str, call):  # noqa: ANN001, ANN202
    with django_assert_num_queries(QUERIES[operation]):
        return call()


# --- the caller's ledger, the platform's ledger ------------------------------------------------------------


@pytest.mark.parametrize("rows", SEVERAL)
def test_transactions_list(django_assert_num_queries, member, rows):
    for _ in range(rows):
        _funded(member, "1")
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_transactions_list",
                        lambda: client.get("/api/billing/transactions/", {"page_size": 10}))
    member.account.refresh_from_db()
    assert response.status_code == 200
    assert len(response.json()["results"]) == min(member.account.last_sequence, 10)


@pytest.mark.parametrize("rows", SEVERAL)
def test_transactions_list_cursor(django_assert_num_queries, member, rows):
    for _ in range(rows):
        _funded(member, "1")
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_transactions_list_cursor",
                        lambda: client.get("/api/billing/transactions/", {"pagination": "cursor",
                                                                          "page_size": 10}))
    member.account.refresh_from_db()
    assert response.status_code == 200
    assert len(response.json()["results"]) == min(member.account.last_sequence, 10)


@pytest.mark.parametrize("rows", SEVERAL)
def test_admin_credits_transactions_list(django_assert_num_queries, platform, owner, rows):
    for i in range(rows):  # rows of several members, some made by a person (username, actor: no N+1)
        someone = make_member(platform, f"user{i}")
        _funded(someone, "1")
        post_json(client_for(owner), "/api/billing/admin/credits/manual/",
                  {"account_id": str(someone.account.id), "amount": "1.00", "description": "bonus"})
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_admin_credits_transactions_list",
                        lambda: client.get("/api/billing/admin/credits/transactions/", {"page_size": 100}))
    assert response.status_code == 200 and len(response.json()["results"]) == 2 * rows
    assert {row["actor"] for row in response.json()["results"]} == {None, owner.user.username}


def test_admin_credits_manual_create(django_assert_num_queries, owner, member):
    client = client_for(owner)
    body = {"account_id": str(member.account.id), "amount": "5.00", "description": "goodwill"}
    response = _counted(django_assert_num_queries, "billing_admin_credits_manual_create",
                        lambda: post_json(client, "/api/billing/admin/credits/manual/", body))
    assert response.status_code == 201, response.content


# --- the daily check-in ------------------------------------------------------------------------------------


def test_checkin_create(django_assert_num_queries, platform, member):
    checkin_config_set(platform=platform, actor=None, enabled=True, credits_per_day=Decimal("1"),
                       streak_bonuses={}, monthly_cap=Decimal("30"), time_zone="UTC")
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_checkin_create",
                        lambda: post_json(client, "/api/billing/checkin/", {}))
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("days", SEVERAL)
def test_checkin_retrieve(django_assert_num_queries, platform, member, days):
    checkin_config_set(platform=platform, actor=None, enabled=True, credits_per_day=Decimal("1"),
                       streak_bonuses={}, monthly_cap=None, time_zone="UTC")
    for day in range(days):
        checkin(platform=platform, account=member.account, actor=None,
                now=timezone.now() - timedelta(days=day))
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_checkin_retrieve",
                        lambda: client.get("/api/billing/checkin/"))
    assert response.status_code == 200 and len(response.json()["history"]) == days


def test_admin_checkin_config_retrieve(django_assert_num_queries, owner):
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_admin_checkin_config_retrieve",
                        lambda: client.get("/api/billing/admin/checkin/config/"))
    assert response.status_code == 200


def test_admin_checkin_config_update(django_assert_num_queries, owner):
    client = client_for(owner)
    body = {"enabled": True, "credits_per_day": "1", "time_zone": "Europe/Paris"}
    response = _counted(django_assert_num_queries, "billing_admin_checkin_config_update",
                        lambda: client.put("/api/billing/admin/checkin/config/", body, format="json"))
    assert response.status_code == 200, response.content


# --- usage --------------------------------------------------------------------------------------------------


def test_usage_create(django_assert_num_queries, owner, member):
    _funded(member)
    client = client_for(owner)
    body = _usage(member, "req-1")
    response = _counted(django_assert_num_queries, "billing_usage_create",
                        lambda: post_json(client, "/api/billing/usage/", body))
    assert response.status_code == 201, response.content


def test_usage_batch_create(django_assert_num_queries, platform, owner):
    members = [make_member(platform, f"user{i}") for i in range(3)]
    for someone in members:
        _funded(someone)
    events = [_usage(someone, f"req-{i}-{j}") for i, someone in enumerate(members) for j in range(4)]
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_usage_batch_create",
                        lambda: post_json(client, "/api/billing/usage/batch/", {"events": events}))
    assert response.status_code == 200 and response.json()["recorded"] == 12, response.content


def test_usage_stats_retrieve(django_assert_num_queries, owner, member):
    _funded(member)
    post_json(client_for(owner), "/api/billing/usage/", _usage(member, "req-1"))
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_usage_stats_retrieve",
                        lambda: client.get("/api/billing/usage/stats/", {"period": "daily"}))
    assert response.status_code == 200, response.content


# --- holds --------------------------------------------------------------------------------------------------


def _hold(owner: Member, member: Member, request_id: str = "hold-1") -> str:
    response = post_json(client_for(owner), "/api/billing/reservations/",
                         {"account_id": str(member.account.id), "amount": "2.00", "request_id": request_id})
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.mark.parametrize("rows", SEVERAL)
def test_reservations_list(django_assert_num_queries, owner, member, rows):
    _funded(member)
    for i in range(rows):
        _hold(owner, member, f"hold-{i}")
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_reservations_list",
                        lambda: client.get("/api/billing/reservations/", {"page_size": 100}))
    assert response.status_code == 200 and len(response.json()["results"]) == rows


def test_reservations_create(django_assert_num_queries, owner, member):
    _funded(member)
    client = client_for(owner)
    body = {"account_id": str(member.account.id), "amount": "2.00", "request_id": "hold-1"}
    response = _counted(django_assert_num_queries, "billing_reservations_create",
                        lambda: post_json(client, "/api/billing/reservations/", body))
    assert response.status_code == 201, response.content


def test_reservations_retrieve(django_assert_num_queries, owner, member):
    _funded(member)
    hold_id = _hold(owner, member)
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_reservations_retrieve",
                        lambda: client.get(f"/api/billing/reservations/{hold_id}/"))
    assert response.status_code == 200, response.content


def test_reservations_capture(django_assert_num_queries, owner, member):
    _funded(member)
    hold_id = _hold(owner, member)
    client = client_for(owner)
    body = {"amount": "1.50", "endpoint": "/v1/chat"}
    response = _counted(django_assert_num_queries, "billing_reservations_capture",
                        lambda: post_json(client, f"/api/billing/reservations/{hold_id}/capture/", body))
    assert response.status_code == 200, response.content


def test_reservations_release(django_assert_num_queries, owner, member):
    _funded(member)
    hold_id = _hold(owner, member)
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_reservations_release",
                        lambda: client.post(f"/api/billing/reservations/{hold_id}/release/"))
    assert response.status_code == 200, response.content


# --- the rate card ------------------------------------------------------------------------------------------


def _price(owner: Member, model: str, input_per_million: str = "1.00") -> None:
    response = post_json(client_for(owner), "/api/billing/admin/models/",
                         {"model": model, "input_per_million": input_per_million,
                          "output_per_million": "2.00"})
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("rows", SEVERAL)
def test_admin_models_list(django_assert_num_queries, owner, rows):
    for i in range(rows):
        _price(owner, f"vendor/model-{i}")
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_admin_models_list",
                        lambda: client.get("/api/billing/admin/models/", {"page_size": 100}))
    assert response.status_code == 200 and len(response.json()["results"]) == rows


def test_admin_models_create(django_assert_num_queries, owner):
    client = client_for(owner)
    body = {"model": "meta-llama/Llama-3-70b", "input_per_million": "1.00", "output_per_million": "2.00"}
    response = _counted(django_assert_num_queries, "billing_admin_models_create",
                        lambda: post_json(client, "/api/billing/admin/models/", body))
    assert response.status_code == 201, response.content


def test_admin_models_retrieve(django_assert_num_queries, owner):
    _price(owner, "meta-llama/Llama-3-70b")
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_admin_models_retrieve",
                        lambda: client.get("/api/billing/admin/models/meta-llama/Llama-3-70b/"))
    assert response.status_code == 200, response.content


# --- plans and the subscription -----------------------------------------------------------------------------


@pytest.mark.parametrize("rows", SEVERAL)
def test_plans_list(django_assert_num_queries, platform, member, rows):
    plans = [make_plan(platform, f"plan-{i}") for i in range(rows)]
    start(member.account, plans[0])
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_plans_list",
                        lambda: client.get("/api/billing/plans/", {"page_size": 100}))
    assert response.status_code == 200 and len(response.json()["results"]) == rows


@pytest.mark.parametrize("rows", SEVERAL)
def test_admin_plans_list(django_assert_num_queries, platform, owner, rows):
    for i in range(rows):
        make_plan(platform, f"plan-{i}")
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_admin_plans_list",
                        lambda: client.get("/api/billing/admin/plans/", {"page_size": 100}))
    assert response.status_code == 200 and len(response.json()["results"]) == rows


def test_admin_plans_create(django_assert_num_queries, owner):
    client = client_for(owner)
    body = {"slug": "pro", "name": "Pro", "price_monthly": 900, "price_yearly": 9000,
            "credits_included": "100"}
    response = _counted(django_assert_num_queries, "billing_admin_plans_create",
                        lambda: post_json(client, "/api/billing/admin/plans/", body))
    assert response.status_code == 201, response.content


def test_admin_plans_retrieve(django_assert_num_queries, platform, owner):
    plan = make_plan(platform, "pro")
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_admin_plans_retrieve",
                        lambda: client.get(f"/api/billing/admin/plans/{plan.pk}/"))
    assert response.status_code == 200, response.content


def test_admin_plans_update(django_assert_num_queries, platform, owner):
    plan = make_plan(platform, "pro")
    client = client_for(owner)
    body = {"name": "Pro 2", "price_monthly": 1000, "price_yearly": 10000, "credits_included": "100"}
    response = _counted(django_assert_num_queries, "billing_admin_plans_update",
                        lambda: client.put(f"/api/billing/admin/plans/{plan.pk}/", body, format="json"))
    assert response.status_code == 200, response.content


def test_admin_plans_partial_update(django_assert_num_queries, platform, owner):
    plan = make_plan(platform, "pro")
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_admin_plans_partial_update",
                        lambda: client.patch(f"/api/billing/admin/plans/{plan.pk}/", {"name": "Pro 2"},
                                             format="json"))
    assert response.status_code == 200, response.content


def test_subscription_retrieve(django_assert_num_queries, platform, member):
    start(member.account, make_plan(platform, "pro"))
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_subscription_retrieve",
                        lambda: client.get("/api/billing/subscription/"))
    assert response.status_code == 200 and response.json()["subscription"] is not None


# --- the account and its summary ----------------------------------------------------------------------------


def test_account_retrieve(django_assert_num_queries, platform, member):
    start(member.account, make_plan(platform, "pro"))
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_account_retrieve",
                        lambda: client.get("/api/billing/account/"))
    assert response.status_code == 200, response.content


def test_account_partial_update(django_assert_num_queries, member):
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_account_partial_update",
                        lambda: client.patch("/api/billing/account/", {"auto_recharge_threshold_usd": "5.00"},
                                             format="json"))
    assert response.status_code == 200, response.content


def test_summary_retrieve(django_assert_num_queries, owner, member):
    _funded(member)
    post_json(client_for(owner), "/api/billing/usage/", _usage(member, "req-1"))
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_summary_retrieve",
                        lambda: client.get("/api/billing/summary/"))
    assert response.status_code == 200, response.content


# --- every operation has its baseline -----------------------------------------------------------------------


def test_every_operation_of_the_schema_has_a_query_count():
    from tests.accounts.test_api_tokens import QUERIES as TOKEN_QUERIES
    from tests.accounts.test_outbound_query_counts import QUERIES as OUTBOUND_QUERIES
    from tests.entitlements.test_api_query_counts import QUERIES as ENTITLEMENT_QUERIES
    from tests.payments.test_billing_page import QUERIES as PAGE_QUERIES
    from tests.payments.test_query_counts import QUERIES as PAYMENT_QUERIES

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        operation["operationId"]
        for path, item in schema["paths"].items() if path.startswith("/api/billing/")
        for operation in item.values()
    }
    assert operations - set(QUERIES) - set(PAYMENT_QUERIES) - set(ENTITLEMENT_QUERIES) - set(OUTBOUND_QUERIES) - set(
        PAGE_QUERIES) - set(TOKEN_QUERIES) == set()
