"""Query-count baselines of the entitlements operations (as ``tests/test_query_counts.py`` pins the others'):
each listing counted with few rows and with many, the same number, so an N+1 cannot come back silently."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts.services import operator_ensure
from credits.services import model_price_create
from entitlements.models import AIPlanModel, Tier
from entitlements.services import seat_assign, seats_grant
from tests.api_helpers import post_json
from tests.conftest import client_for, make_member
from tests.entitlements.conftest import make_ai_plan
from tests.entitlements.test_api import charge

pytestmark = pytest.mark.django_db

# SQL statements per request through Django's connection, by operation id (token authentication and the
# caller's memberships are prepared statements on the raw connection: not counted).
QUERIES = {
    "billing_entitlements_retrieve": 6,
    "billing_entitlements_me_retrieve": 3,
    "billing_ai_plans_list": 1,
    "billing_ai_plans_list_with_seats": 3,
    "billing_ai_plans_retrieve": 6,
    "billing_ai_plans_create": 15,
    "billing_ai_plans_partial_update": 20,
    "billing_ai_plans_seats_create": 16,
    "billing_ai_plans_seats_destroy": 11,
}

SEVERAL = [2, 12]


def _counted(django_assert_num_queries, operation: str, call):  # noqa: ANN001, ANN202
    with django_assert_num_queries(QUERIES[operation]):
        return call()


def _plans(platform, rows: int) -> list:  # noqa: ANN001
    plans = []
    for index in range(rows):
        plan = make_ai_plan(f"plan-{index:02d}", Tier.ADVANCED)
        AIPlanModel.objects.create(plan=plan, model=f"model-{index}", tier=Tier.EVERYDAY)
        seats_grant(platform=platform, ai_plan=plan, quantity=rows + 1)
        plans.append(plan)
    return plans


def _seated(platform, plan, rows: int) -> None:  # noqa: ANN001
    for index in range(rows):
        member = make_member(platform, f"user-{index:02d}")
        seat_assign(platform=platform, ai_plan=plan, username=member.user.username, actor=None)
        charge(platform, member.user, plan, "0.01", timezone.now())


@pytest.mark.parametrize("rows", SEVERAL)
def test_entitlements_retrieve(django_assert_num_queries, platform, owner, rows):
    plans = _plans(platform, rows)
    _seated(platform, plans[0], rows)
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_entitlements_retrieve",
                        lambda: client.get("/api/billing/entitlements/"))
    assert response.status_code == 200 and len(response.json()["plans"]) == rows


@pytest.mark.parametrize("rows", SEVERAL)
def test_entitlements_me_retrieve(django_assert_num_queries, platform, member, rows):
    plans = _plans(platform, rows)
    seat_assign(platform=platform, ai_plan=plans[0], username=member.user.username, actor=None)
    client = client_for(member)
    response = _counted(django_assert_num_queries, "billing_entitlements_me_retrieve",
                        lambda: client.get("/api/billing/entitlements/me/"))
    assert response.status_code == 200 and len(response.json()["seat"]["models"]) == rows


@pytest.mark.parametrize("rows", SEVERAL)
def test_ai_plans_list(django_assert_num_queries, platform, owner, rows):
    _plans(platform, rows)
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_ai_plans_list",
                        lambda: client.get("/api/billing/ai-plans/", {"page_size": 100}))
    assert response.status_code == 200 and response.json()["count"] == rows
    response = _counted(django_assert_num_queries, "billing_ai_plans_list_with_seats",
                        lambda: client.get("/api/billing/ai-plans/", {"page_size": 100, "include_seats": "true"}))
    assert response.status_code == 200 and response.json()["results"][0]["seats"]["total"] == rows + 1


@pytest.mark.parametrize("rows", SEVERAL)
def test_ai_plans_retrieve(django_assert_num_queries, platform, owner, rows):
    plan = _plans(platform, 1)[0]
    for index in range(rows):
        AIPlanModel.objects.create(plan=plan, model=f"extra-{index}", tier=Tier.ADVANCED)
    seats_grant(platform=platform, ai_plan=plan, quantity=rows)
    _seated(platform, plan, rows)
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_ai_plans_retrieve",
                        lambda: client.get(f"/api/billing/ai-plans/{plan.slug}/"))
    assert response.status_code == 200 and len(response.json()["seats"]["assignments"]) == rows


@pytest.fixture
def operator_client(platform):  # noqa: ANN001, ANN201
    for model in ("gpt-4o", "gpt-4o-mini"):
        model_price_create(platform=platform, model=model, input_per_million=D("1"), output_per_million=D("2"),
                           actor=None)
    _user, token = operator_ensure(username="root")
    return client_for(token=token.key)


def test_ai_plans_create(django_assert_num_queries, operator_client):
    body = {"slug": "new", "name": "New", "tier": "advanced", "weekly_budget": "2", "session_budget": "1",
            "models": [{"model": "gpt-4o", "tier": "advanced"}, {"model": "gpt-4o-mini", "tier": "everyday"}],
            "platforms": ["acme"]}
    response = _counted(django_assert_num_queries, "billing_ai_plans_create",
                        lambda: post_json(operator_client, "/api/billing/ai-plans/", body))
    assert response.status_code == 201, response.content


def test_ai_plans_partial_update(django_assert_num_queries, operator_client, ai_plan):
    body = {"name": "Renamed", "models": [{"model": "gpt-4o", "tier": "advanced"}], "platforms": ["acme"]}
    response = _counted(django_assert_num_queries, "billing_ai_plans_partial_update",
                        lambda: operator_client.patch(f"/api/billing/ai-plans/{ai_plan.pk}/", body, format="json"))
    assert response.status_code == 200, response.content


def test_ai_plans_seats_create(django_assert_num_queries, platform, owner, member, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_ai_plans_seats_create",
                        lambda: post_json(client, "/api/billing/ai-plans/advanced/seats/", {"username": "mia"}))
    assert response.status_code == 201, response.content


def test_ai_plans_seats_destroy(django_assert_num_queries, platform, owner, member, ai_plan):
    seats_grant(platform=platform, ai_plan=ai_plan, quantity=1)
    seat_assign(platform=platform, ai_plan=ai_plan, username="mia", actor=None)
    client = client_for(owner)
    response = _counted(django_assert_num_queries, "billing_ai_plans_seats_destroy",
                        lambda: client.delete("/api/billing/ai-plans/advanced/seats/mia/"))
    assert response.status_code == 204, response.content


def test_every_entitlements_operation_has_a_query_count():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        operation["operationId"]
        for path, item in schema["paths"].items()
        if path.startswith(("/api/billing/entitlements/", "/api/billing/ai-plans/"))
        and path != "/api/billing/entitlements/refresh/"  # payments' (its counts are in payments' tests)
        for operation in item.values()
    }
    assert operations - set(QUERIES) == set()
