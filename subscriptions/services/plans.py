"""Every write of plans.

Plans (``plan_create``, ``plan_update``):
- Values are checked by ``subscriptions.validation.plan_problems`` (400 ``InvalidInput`` naming the fields);
  a slug, Stripe price id or Creem product id already used by another plan of the platform is a 409
  ``PlanConflict`` (a Stripe price id counts whether it is another plan's monthly or yearly price). Writes of
  one platform's plans are serialized (``locks.platform_plans_lock``), so these checks cannot race.
- Plans are never deleted: deactivate them (``is_active=False``). Subscribers keep an inactive plan.
- The slug is fixed once created: ``current_plan`` and ``previous_plan`` report it, and frontends key on it.
- Stripe prices are immutable, so a plan's price for a cycle that is sold through a Stripe price may only
  change together with that cycle's Stripe price id (a new price created in Stripe), or with the id cleared.
  Otherwise the catalogue would show one amount while Stripe charges another. Creem product ids are not
  tied to an amount here: a Creem product's price is edited in Creem itself.
- Setting ``rollover_policy`` to something other than "capped" without naming ``rollover_cap`` clears the cap.

Each service runs in one transaction (``transaction.atomic``, not durable).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import Platform
from subscriptions.errors import (
    PlanConflict,
    PlanNotFound,
)
from subscriptions.locks import plan_lock, platform_plans_lock
from subscriptions.models import (
    Plan,
    RolloverPolicy,
)
from subscriptions.services.common import UNSET, as_uuid, invalid
from subscriptions.validation import PLAN_FIELDS, plan_problems

# --- plans -----------------------------------------------------------------------------------------------

# The unique constraints on plans, and the field each one is about (for a 409 that names it).
_PLAN_CONSTRAINT_FIELDS = {
    "plan_unique_slug_per_platform": "slug",
    "plan_unique_stripe_price_monthly": "stripe_price_monthly",
    "plan_unique_stripe_price_yearly": "stripe_price_yearly",
    "plan_unique_creem_product": "creem_product_id",
}


def plan_conflicts(
    *, platform_id: int, values: dict[str, Any], exclude: uuid.UUID | None
) -> dict[str, list[str]]:
    """The fields of ``values`` whose slug or provider id another plan of the platform already uses."""
    others = Plan.objects.filter(platform_id=platform_id)
    if exclude is not None:
        others = others.exclude(pk=exclude)
    conflicts: dict[str, list[str]] = {}

    def taken(field: str, query: Q) -> None:
        other = others.filter(query).values_list("slug", flat=True).first()
        if other is not None:
            conflicts[field] = [f'Already used by the plan "{other}".']

    taken("slug", Q(slug=values["slug"]))
    for field in ("stripe_price_monthly", "stripe_price_yearly"):
        if values[field]:
            taken(field, Q(stripe_price_monthly=values[field]) | Q(stripe_price_yearly=values[field]))
    if values["creem_product_id"]:
        taken("creem_product_id", Q(creem_product_id=values["creem_product_id"]))
    return conflicts


def _raise_for_conflicts(conflicts: dict[str, list[str]]) -> None:
    if conflicts:
        raise PlanConflict(
            f"Another plan of this platform already uses: {', '.join(conflicts)}.", details=conflicts
        )


def _save_plan(plan: Plan, *, update_fields: list[str] | None = None) -> None:
    """Saves in a savepoint: a unique violation (the lock makes it unexpected) is still a 409, not a 500."""
    try:
        with transaction.atomic():
            plan.save(update_fields=update_fields, force_insert=update_fields is None)
    except IntegrityError as exc:
        name = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
        if name in _PLAN_CONSTRAINT_FIELDS:
            field = _PLAN_CONSTRAINT_FIELDS[name]
            raise PlanConflict(details={field: ["Already used by another plan of this platform."]}) from None
        raise


@transaction.atomic
def plan_create(
    *,
    platform: Platform,
    slug: str,
    name: str,
    price_monthly: int,
    price_yearly: int,
    credits_included: Decimal,
    description: str = "",
    currency: str = "USD",
    features: list[str] | None = None,
    free_trial: bool = False,
    unlimited_credits: bool = False,
    rollover_policy: str = RolloverPolicy.NONE,
    rollover_cap: Decimal | None = None,
    purchasable: bool = True,
    is_active: bool = True,
    stripe_price_monthly: str = "",
    stripe_price_yearly: str = "",
    creem_product_id: str = "",
    sort_order: int = 0,
    actor: AbstractBaseUser | None = None,
) -> Plan:
    """Adds a plan to ``platform``. ``InvalidInput`` (400) for bad values, ``PlanConflict`` (409) for a slug
    or provider id another plan of the platform has. (``actor``: for a future audit trail of plans.)"""
    arguments = locals()
    values = {field: arguments[field] for field in PLAN_FIELDS}
    if values["features"] is None:
        values["features"] = []
    elif isinstance(values["features"], (list, tuple)):
        values["features"] = list(values["features"])  # a copy: the plan never shares the caller's list
    problems = plan_problems(values)
    if problems:
        raise invalid(problems)
    platform_plans_lock(platform_id=platform.pk)
    _raise_for_conflicts(plan_conflicts(platform_id=platform.pk, values=values, exclude=None))
    plan = Plan(platform=platform, **values)
    _save_plan(plan)
    return plan


def plan_update_problems(plan: Plan, changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The plan's values after ``changes`` and every problem with them (except conflicts with other plans).

    Also used by the admin form, to show the problems on the form before the service is called."""
    changes = dict(changes)
    problems: dict[str, list[str]] = {}
    if "slug" in changes and changes["slug"] != plan.slug:
        problems["slug"] = [f'Cannot be changed (it is "{plan.slug}"): create a new plan instead.']
    if (
        "rollover_policy" in changes
        and changes["rollover_policy"] != RolloverPolicy.CAPPED
        and "rollover_cap" not in changes
    ):
        changes["rollover_cap"] = None  # leaving "capped" drops the cap
    merged = {field: getattr(plan, field) for field in PLAN_FIELDS} | changes
    problems = plan_problems(merged) | problems
    for cycle in ("monthly", "yearly"):
        price, price_id = f"price_{cycle}", f"stripe_price_{cycle}"
        old_id = getattr(plan, price_id)
        if (
            old_id
            and price not in problems
            and merged[price] != getattr(plan, price)
            and merged[price_id] == old_id
        ):
            problems[price] = [
                (
                    f"This cycle is sold through the Stripe price {old_id}, and Stripe prices cannot change: "
                    f"create a price for the new amount in Stripe and send its id as {price_id} in the same "
                    f"update (or clear {price_id})."
                )
            ]
    return merged, problems


@transaction.atomic
def plan_update(
    *,
    plan_id: uuid.UUID | str,
    slug: str = UNSET,
    name: str = UNSET,
    description: str = UNSET,
    price_monthly: int = UNSET,
    price_yearly: int = UNSET,
    currency: str = UNSET,
    credits_included: Decimal = UNSET,
    features: list[str] = UNSET,
    free_trial: bool = UNSET,
    unlimited_credits: bool = UNSET,
    rollover_policy: str = UNSET,
    rollover_cap: Decimal | None = UNSET,
    purchasable: bool = UNSET,
    is_active: bool = UNSET,
    stripe_price_monthly: str = UNSET,
    stripe_price_yearly: str = UNSET,
    creem_product_id: str = UNSET,
    sort_order: int = UNSET,
    actor: AbstractBaseUser | None = None,
) -> Plan:
    """Changes the given fields of a plan (the others stay); see the module's rules. ``PlanNotFound`` (404),
    ``InvalidInput`` (400), ``PlanConflict`` (409). Nothing is written when nothing changes."""
    arguments = locals()
    given = {field: arguments[field] for field in PLAN_FIELDS}
    changes = {field: value for field, value in given.items() if value is not UNSET}
    plan_id = as_uuid(plan_id)
    platform_id = (
        None
        if plan_id is None
        else Plan.objects.filter(pk=plan_id).values_list("platform_id", flat=True).first()
    )
    if platform_id is None:
        raise PlanNotFound()
    platform_plans_lock(platform_id=platform_id)
    plan = plan_lock(plan_id=plan_id)
    merged, problems = plan_update_problems(plan, changes)
    if problems:
        raise invalid(problems)
    _raise_for_conflicts(plan_conflicts(platform_id=platform_id, values=merged, exclude=plan.pk))
    changed = [field for field in PLAN_FIELDS if merged[field] != getattr(plan, field)]
    if not changed:
        return plan
    for field in changed:
        setattr(plan, field, merged[field])
    _save_plan(plan, update_fields=[*changed, "updated_at"])
    return plan


