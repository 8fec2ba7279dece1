"""Plans and subscriptions made through the services."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from accounts.models import Platform
from credits.models import CreditAccount
from subscriptions.models import Plan, Subscription, SubscriptionChange
from subscriptions.services import plan_create, subscription_start

_ids = itertools.count(1)


def make_plan(platform: Platform, slug: str, **fields: Any) -> Plan:
    values: dict[str, Any] = {
        "name": slug.title(),
        "price_monthly": 1000,
        "price_yearly": 10000,
        "credits_included": Decimal("100"),
    } | fields
    return plan_create(platform=platform, slug=slug, **values)


def start(account: CreditAccount, plan: Plan, **kwargs: Any) -> Subscription:
    """A Stripe subscription of ``account`` on ``plan`` with a fresh provider id (unless given)."""
    values: dict[str, Any] = {
        "billing_cycle": "monthly",
        "provider": "stripe",
        "provider_subscription_id": f"sub_test{next(_ids)}",
        "provider_customer_id": "cus_test",
    } | kwargs
    return subscription_start(account_id=account.pk, plan_id=plan.pk, **values).subscription


def plan_rows() -> list[dict[str, Any]]:
    return list(Plan.objects.order_by("id").values())


def subscription_rows() -> tuple[list[dict[str, Any]], int]:
    return list(Subscription.objects.order_by("id").values()), SubscriptionChange.objects.count()


@pytest.fixture
def growth(platform: Platform) -> Plan:
    return make_plan(
        platform,
        "growth",
        name="Growth",
        price_monthly=2900,
        price_yearly=29000,
        credits_included=Decimal("1000"),
        features=["Priority support"],
        stripe_price_monthly="price_growth_m",
        stripe_price_yearly="price_growth_y",
        sort_order=2,
    )


@pytest.fixture
def pro(platform: Platform) -> Plan:
    return make_plan(
        platform,
        "pro",
        name="Pro",
        price_monthly=9900,
        price_yearly=99000,
        credits_included=Decimal("5000"),
        sort_order=3,
    )


@pytest.fixture
def unlimited(platform: Platform) -> Plan:
    return make_plan(
        platform,
        "unlimited",
        name="Unlimited",
        price_monthly=49900,
        price_yearly=499000,
        credits_included=Decimal("0"),
        unlimited_credits=True,
        sort_order=4,
    )
