"""Reads of plans and subscriptions. The account endpoint's plan fields cost two queries whatever the history:
one for the account's latest subscription (with its plan and previous plan), one for the pricing table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Case, F, IntegerField, Q, QuerySet, Value, When

from accounts.models import Platform
from billing_service.money import format_money
from subscriptions.models import CURRENT_STATUSES, BillingCycle, Plan, Subscription, SubscriptionStatus

# What ``current_plan`` and ``previous_plan`` say for "no plan": the account is on the free trial.
FREE_TRIAL = "free_trial"

CATALOG_ORDER = ("sort_order", "price_monthly", "slug")


# --- plans -----------------------------------------------------------------------------------------------


def plan_list(
    *, platform: Platform, is_active: bool | None = None, purchasable: bool | None = None
) -> QuerySet[Plan]:
    """Every plan of ``platform`` (optionally only active / purchasable ones), in catalogue order."""
    rows = Plan.objects.filter(platform=platform)
    if is_active is not None:
        rows = rows.filter(is_active=is_active)
    if purchasable is not None:
        rows = rows.filter(purchasable=purchasable)
    return rows.order_by(*CATALOG_ORDER, "id")


def plan_catalog(*, platform_id: int) -> QuerySet[Plan]:
    """The plans on sale: active and purchasable, in catalogue order."""
    return Plan.objects.filter(platform_id=platform_id, is_active=True, purchasable=True).order_by(
        *CATALOG_ORDER, "id"
    )


def plan_get(*, platform: Platform, plan_id: uuid.UUID | str) -> Plan | None:
    """One plan of ``platform``; None when there is none (or it is another platform's)."""
    return Plan.objects.filter(platform=platform, pk=plan_id).first()


def plan_on_sale(*, platform: Platform, plan_id: str) -> Plan | None:
    """The active, purchasable plan of ``platform`` named by its id or its slug (what a checkout buys); None when
    there is none."""
    plans = Plan.objects.filter(platform=platform, is_active=True, purchasable=True)
    try:
        return plans.filter(pk=uuid.UUID(str(plan_id))).first()
    except ValueError:
        return plans.filter(slug=plan_id).first()


PRICING_TABLE_SCHEMA = {
    "type": "object",
    "required": ["plans"],
    "properties": {
        "plans": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "id",
                    "slug",
                    "name",
                    "description",
                    "price_monthly",
                    "price_yearly",
                    "currency",
                    "credits_included",
                    "features",
                    "free_trial",
                    "unlimited_credits",
                ],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "slug": {"type": "string"},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "price_monthly": {"type": "integer", "description": "Cents per month."},
                    "price_yearly": {"type": "integer", "description": "Cents per year."},
                    "currency": {"type": "string"},
                    "credits_included": {"type": "string", "format": "decimal", "example": "1000.00"},
                    "features": {"type": "array", "items": {"type": "string"}},
                    "free_trial": {"type": "boolean"},
                    "unlimited_credits": {"type": "boolean"},
                },
            },
        }
    },
}


def plan_for_stripe_price(*, platform_id: int, price_id: str) -> tuple[Plan, str] | None:
    """The plan of ``platform_id`` sold through the Stripe price ``price_id``, and its billing cycle."""
    if not price_id:
        return None
    plan = Plan.objects.filter(
        Q(stripe_price_monthly=price_id) | Q(stripe_price_yearly=price_id), platform_id=platform_id
    ).first()
    if plan is None:
        return None
    return plan, BillingCycle.MONTHLY if plan.stripe_price_monthly == price_id else BillingCycle.YEARLY


def plan_for_creem_product(*, platform_id: int, product_id: str) -> Plan | None:
    if not product_id:
        return None
    return Plan.objects.filter(platform_id=platform_id, creem_product_id=product_id).first()


def pricing_table(*, platform_id: int) -> dict[str, Any]:
    """The plans on sale in a compact, JSON-ready form: ``{"plans": [...]}``."""
    rows = plan_catalog(platform_id=platform_id).values(
        "id",
        "slug",
        "name",
        "description",
        "price_monthly",
        "price_yearly",
        "currency",
        "credits_included",
        "features",
        "free_trial",
        "unlimited_credits",
    )
    return {
        "plans": [
            {**row, "id": str(row["id"]), "credits_included": format_money(row["credits_included"])}
            for row in rows
        ]
    }


# --- subscriptions ---------------------------------------------------------------------------------------


def subscription_current(*, account_id: uuid.UUID | str) -> Subscription | None:
    """The account's current subscription (trialing, active or past due), with its plans."""
    return (
        Subscription.objects.filter(account_id=account_id, status__in=CURRENT_STATUSES)
        .select_related("plan", "previous_plan")
        .first()
    )


def subscription_current_plan_id(*, platform: Platform, user: AbstractBaseUser) -> uuid.UUID | None:
    """The plan of the member's current subscription on ``platform``, without creating any account."""
    return (
        Subscription.objects.filter(
            account__platform=platform, account__user=user, status__in=CURRENT_STATUSES
        )
        .values_list("plan_id", flat=True)
        .first()
    )


def subscription_by_provider(*, provider: str, provider_subscription_id: str) -> Subscription | None:
    if not provider_subscription_id:
        return None
    return Subscription.objects.filter(
        provider=provider, provider_subscription_id=provider_subscription_id
    ).first()


def subscription_latest(*, account_id: uuid.UUID | str) -> Subscription | None:
    """The current subscription, else the one that ended last; with its plan and previous plan."""
    current_first = Case(
        When(status__in=CURRENT_STATUSES, then=Value(0)), default=Value(1), output_field=IntegerField()
    )
    return (
        Subscription.objects.filter(account_id=account_id)
        .select_related("plan", "previous_plan")
        .order_by(current_first, F("ended_at").desc(nulls_last=True), "-created_at", "-id")
        .first()
    )


@dataclass(frozen=True, slots=True)
class AccountPlanState:
    current_plan: str  # the current subscription's plan slug, or "free_trial"
    previous_plan: str | None  # the plan before the last change ("free_trial": none); None: never changed
    free_trial: bool  # no paid current subscription: none, trialing, or on a free-trial plan
    unlimited_credits: bool  # the current plan grants unlimited credits
    subscription: Subscription | None  # the current subscription


def plan_state_of(latest: Subscription | None) -> AccountPlanState:
    """The plan fields of an account whose latest subscription (``subscription_latest``) is ``latest``."""
    if latest is None:
        return AccountPlanState(FREE_TRIAL, None, True, False, None)
    if not latest.is_current:  # ended: back on the free trial, coming from its plan
        return AccountPlanState(FREE_TRIAL, latest.plan.slug, True, False, None)
    previous = latest.previous_plan.slug if latest.previous_plan_id else FREE_TRIAL
    return AccountPlanState(
        current_plan=latest.plan.slug,
        previous_plan=previous,
        free_trial=latest.status == SubscriptionStatus.TRIALING or latest.plan.free_trial,
        unlimited_credits=latest.plan.unlimited_credits,
        subscription=latest,
    )


def account_plan_state(*, account_id: uuid.UUID | str) -> AccountPlanState:
    """``current_plan``, ``previous_plan``, ``free_trial`` and unlimited credits of an account: one query."""
    return plan_state_of(subscription_latest(account_id=account_id))
