"""GET /api/billing/account/: current_plan, previous_plan, free_trial, has_credits and pricing_table from real
plans and subscriptions, at a constant number of queries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from credits.models import CreditAccount
from credits.services import credits_debit, hold_create
from subscriptions.services import plan_update, subscription_change_plan, subscription_set_status
from tests.api_helpers import ACCOUNT_URL
from tests.conftest import client_for, make_member
from tests.subscriptions.conftest import make_plan, start

pytestmark = pytest.mark.django_db


def plan_fields(member, **params) -> dict:
    response = client_for(member).get(ACCOUNT_URL, params)
    assert response.status_code == 200, response.content
    body = response.json()
    return {k: body[k] for k in ("current_plan", "previous_plan", "free_trial", "has_credits")}


def test_a_new_account_is_on_the_free_trial(platform):
    fresh = make_member(platform, "nora")
    assert plan_fields(fresh) == {
        "current_plan": "free_trial",
        "previous_plan": None,
        "free_trial": True,
        "has_credits": False,
    }


def test_a_subscription_sets_the_plan_and_ends_the_free_trial(member, growth):
    start(member.account, growth)
    assert plan_fields(member) == {
        "current_plan": "growth",
        "previous_plan": "free_trial",
        "free_trial": False,
        "has_credits": True,
    }


def test_a_plan_change_makes_the_old_plan_previous(member, growth, pro):
    sub = start(member.account, growth)
    subscription_change_plan(subscription_id=sub.pk, plan_id=pro.pk)
    assert plan_fields(member)["current_plan"] == "pro"
    assert plan_fields(member)["previous_plan"] == "growth"
    subscription_change_plan(subscription_id=sub.pk, plan_id=growth.pk, billing_cycle="yearly")
    assert (plan_fields(member)["current_plan"], plan_fields(member)["previous_plan"]) == ("growth", "pro")


def test_an_ended_subscription_puts_the_account_back_on_the_free_trial(member, growth, pro):
    sub = start(member.account, growth)
    subscription_change_plan(subscription_id=sub.pk, plan_id=pro.pk)
    subscription_set_status(subscription_id=sub.pk, status="canceled")
    assert plan_fields(member) == {
        "current_plan": "free_trial",
        "previous_plan": "pro",
        "free_trial": True,
        "has_credits": True,
    }


def test_the_latest_ended_subscription_gives_previous_plan(member, growth, pro):
    first = start(member.account, growth)
    subscription_set_status(subscription_id=first.pk, status="expired")
    second = start(member.account, pro)
    subscription_set_status(subscription_id=second.pk, status="canceled")
    assert plan_fields(member)["previous_plan"] == "pro"


@pytest.mark.parametrize(
    ("status", "free_trial"), [("trialing", True), ("active", False), ("past_due", False)]
)
def test_free_trial_follows_the_subscription_status(member, growth, status, free_trial):
    start(member.account, growth, status=status)
    fields = plan_fields(member)
    assert (fields["current_plan"], fields["free_trial"]) == ("growth", free_trial)


def test_a_trial_plan_counts_as_the_free_trial(member, platform):
    trial = make_plan(platform, "trial", price_monthly=0, price_yearly=0, free_trial=True)
    start(member.account, trial, provider="manual", provider_subscription_id="")
    assert (plan_fields(member)["current_plan"], plan_fields(member)["free_trial"]) == ("trial", True)


def test_an_unlimited_plan_has_credits_at_zero_balance(platform, unlimited, growth):
    fresh = make_member(platform, "nora")
    sub = start(fresh.account, unlimited)
    body = client_for(fresh).get(ACCOUNT_URL).json()
    assert (body["available_credits"], body["has_credits"], body["current_plan"]) == (
        "0.00",
        True,
        "unlimited",
    )
    subscription_change_plan(subscription_id=sub.pk, plan_id=growth.pk)  # a limited plan: balance decides
    assert plan_fields(fresh)["has_credits"] is False


def test_an_unlimited_plan_has_credits_with_everything_spent_or_held(member, unlimited):
    start(member.account, unlimited, status="past_due")
    hold_create(account_id=member.account.pk, amount=Decimal("40"))
    credits_debit(account_id=member.account.pk, amount=Decimal("60"), description="all the rest")
    body = client_for(member).get(ACCOUNT_URL).json()
    assert (body["available_credits"], body["has_credits"]) == ("0.00", True)


def test_unlimited_ends_with_the_subscription(platform, unlimited):
    fresh = make_member(platform, "nora")
    sub = start(fresh.account, unlimited)
    subscription_set_status(subscription_id=sub.pk, status="expired")
    assert plan_fields(fresh)["has_credits"] is False


def test_the_plan_fields_are_the_callers_own(member, other_member, growth):
    start(member.account, growth)
    assert plan_fields(other_member)["current_plan"] == "free_trial"


def test_the_platform_account_has_its_own_plan(admin, platform, pro):
    platform_account = CreditAccount.objects.get(platform=platform, user__isnull=True)
    start(platform_account, pro)
    assert plan_fields(admin, platform_key="acme")["current_plan"] == "pro"
    assert plan_fields(admin)["current_plan"] == "free_trial"


# --- the pricing table -----------------------------------------------------------------------------------


def test_the_pricing_table_lists_the_plans_on_sale(member, outsider, growth, pro, unlimited):
    make_plan(member.platform, "legacy", is_active=False)
    make_plan(member.platform, "enterprise", purchasable=False)
    make_plan(outsider.platform, "theirs")
    plan_update(plan_id=pro.pk, description="For teams", features=["SSO", "Audit log"])
    table = client_for(member).get(ACCOUNT_URL).json()["pricing_table"]
    assert set(table) == {"plans"}
    assert [p["slug"] for p in table["plans"]] == ["growth", "pro", "unlimited"]
    assert table["plans"][1] == {
        "id": str(pro.pk),
        "slug": "pro",
        "name": "Pro",
        "description": "For teams",
        "price_monthly": 9900,
        "price_yearly": 99000,
        "currency": "USD",
        "credits_included": "5000.00",
        "features": ["SSO", "Audit log"],
        "free_trial": False,
        "unlimited_credits": False,
    }
    assert table["plans"][2]["unlimited_credits"] is True
    assert "price_growth_m" not in str(table)  # provider ids stay out of members' view


def test_the_pricing_table_follows_plan_changes(member, growth, pro):
    plan_update(plan_id=pro.pk, sort_order=0)
    plan_update(plan_id=growth.pk, purchasable=False)
    table = client_for(member).get(ACCOUNT_URL).json()["pricing_table"]
    assert [p["slug"] for p in table["plans"]] == ["pro"]


# --- cost ------------------------------------------------------------------------------------------------


def test_the_account_endpoint_costs_the_same_whatever_the_history(platform, member, growth, pro):
    client = client_for(member)
    client.get(ACCOUNT_URL)  # warm-up (token, membership caches)

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(ACCOUNT_URL).status_code == 200
        return [q["sql"] for q in ctx.captured_queries]

    baseline = queries()
    for i in range(5):
        make_plan(platform, f"extra{i}")
    sub = start(member.account, growth)
    for _ in range(3):
        subscription_change_plan(subscription_id=sub.pk, plan_id=pro.pk)
        subscription_change_plan(subscription_id=sub.pk, plan_id=growth.pk)
    subscription_set_status(subscription_id=sub.pk, status="canceled")
    start(member.account, pro)
    after = queries()
    assert len(after) == len(baseline), after
    plan_queries = [sql for sql in after if "subscriptions_" in sql]
    assert len(plan_queries) == 2, plan_queries  # the latest subscription with its plans; the pricing table
