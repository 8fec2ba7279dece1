"""The operators' catalogue of AI plans: every write of a plan, of the models its seats may call and of the
platforms it is offered to (``ai_plan_create``, ``ai_plan_update``), for the API and the Django admin alike.

What a plan may be (``ai_plan_problems`` and, against the database, ``_catalogue_problems``; a 400
``InvalidInput`` naming every bad field, nothing written):
- ``name``: text, 1-200 characters; ``icon``: text up to 64 (may be empty).
- ``slug``: 1-100 lowercase letters, digits, "-" or "_", starting with a letter or digit, and not shaped like a
  UUID (a plan is looked up by its id or its slug); fixed once created (seat subscriptions and providers name it).
- ``tier``, ``overage``, ``billing_cycle``: one of their choices; ``currency``: USD.
- ``weekly_budget``, ``session_budget``: credits above 0, at most 6 decimals, at most 1,000,000,000; the session
  budget at most the weekly one.
- ``price_per_seat_cents``: whole cents (a JSON integer), 0 to ``MAX_SEAT_PRICE_CENTS``.
- ``stripe_price_id``: "" or a Stripe price id (``price_...``), naming at most one plan.
- ``purchasable``, ``is_active``: booleans. Plans are never deleted: ``is_active`` false retires one.
- ``models``: up to ``MAX_PLAN_MODELS`` entries ``{model, display_name, tier}``, each model once, each a model
  name that some platform's rate card prices (``credits.ModelPrice``), of a tier at or below the plan's (its seats
  could not call one above it), and of the tier every other active plan listing it gives it (a model has one
  tier in the catalogue, so which seats may call it is never ambiguous).
- ``platforms``: the keys of existing platforms it is offered to, each once; none: every platform.

A slug or Stripe price id that another plan has is a 409 ``ai_plan_conflict``. Writes of the catalogue are
serialized (``locks.catalogue_lock``), so the checks against other plans cannot race. Each service is one transaction
(``transaction.atomic``, not durable: the Django admin calls them inside its own form transaction).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from accounts.models import Platform
from billing_service.errors import InvalidInput
from billing_service.inputs import text_problem, uuid_or_none
from billing_service.money import format_money
from credits.services.rate_card import MODEL_NAME_HELP, is_valid_model_name
from entitlements import locks, selectors
from entitlements.errors import AIPlanConflict, AIPlanNotFound
from entitlements.models import TIER_RANK, AIPlan, AIPlanModel, Overage, Tier
from subscriptions.models import BillingCycle
from subscriptions.validation import STRIPE_PRICE_PREFIXES, cents_problem, credits_problem, provider_id_problem


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "leave it as it is" in ai_plan_update

NAME_MAX_LENGTH = 200
ICON_MAX_LENGTH = 64
SLUG_MAX_LENGTH = 100
SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
SLUG_HELP = (
    "1-100 lowercase letters, digits, '-' or '_', starting with a letter or digit, not shaped like a UUID; unique "
    "in the catalogue and fixed once created."
)
DISPLAY_NAME_MAX_LENGTH = 200
# The column is a PostgreSQL integer (at most 2,147,483,647): 10,000,000.00 USD per seat and cycle is plenty.
MAX_SEAT_PRICE_CENTS = 1_000_000_000
MAX_PLAN_MODELS = 200
MAX_PLAN_PLATFORMS = 1000
SUPPORTED_CURRENCIES = ("USD",)

PLAN_FIELDS = ("slug", "name", "tier", "icon", "weekly_budget", "session_budget", "overage", "purchasable",
               "billing_cycle", "price_per_seat_cents", "currency", "stripe_price_id", "is_active")



# --- what a plan may be ----------------------------------------------------------------------------------------


def slug_problem(value: object) -> str | None:
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value) or uuid_or_none(value) is not None:
        return SLUG_HELP
    return None


def _choice_problem(value: object, choices: Sequence[str]) -> str | None:
    if not isinstance(value, str) or value not in choices:
        return f"Must be one of: {', '.join(choices)}."
    return None


def _bool_problem(value: object) -> str | None:
    return None if isinstance(value, bool) else "Must be true or false."


def seat_price_problem(value: object) -> str | None:
    problem = cents_problem(value)
    if problem is None and value > MAX_SEAT_PRICE_CENTS:  # type: ignore[operator]
        return f"Must be at most {MAX_SEAT_PRICE_CENTS}."
    return problem


FIELD_CHECKS = {
    "slug": slug_problem,
    "name": lambda v: text_problem(v, max_length=NAME_MAX_LENGTH, blank=False),
    "tier": lambda v: _choice_problem(v, Tier.values),
    "icon": lambda v: text_problem(v, max_length=ICON_MAX_LENGTH),
    "weekly_budget": lambda v: credits_problem(v, positive=True),
    "session_budget": lambda v: credits_problem(v, positive=True),
    "overage": lambda v: _choice_problem(v, Overage.values),
    "purchasable": _bool_problem,
    "billing_cycle": lambda v: _choice_problem(v, BillingCycle.values),
    "price_per_seat_cents": seat_price_problem,
    "currency": lambda v: _choice_problem(v, SUPPORTED_CURRENCIES),
    "stripe_price_id": lambda v: provider_id_problem(v, prefix=STRIPE_PRICE_PREFIXES),
    "is_active": _bool_problem,
}


def models_problem(value: object, *, tier: object) -> str | None:
    """The shape of a plan's models: a list of ``{model, display_name?, tier}``, each model once, each of a tier
    at or below the plan's ``tier`` (when that is valid)."""
    if not isinstance(value, (list, tuple)):
        return "Must be a list of {model, display_name, tier} objects."
    if len(value) > MAX_PLAN_MODELS:
        return f"Must have at most {MAX_PLAN_MODELS} items."
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - {"model", "display_name", "tier"}:
            return f"Item {index}: must be an object with model, display_name and tier only."
        model, tier_of_model = item.get("model"), item.get("tier")
        if not is_valid_model_name(model):
            return f"Item {index}: model: {MODEL_NAME_HELP}"
        problem = text_problem(item.get("display_name", ""), max_length=DISPLAY_NAME_MAX_LENGTH)
        if problem:
            return f"Item {index} ({model}): display_name: {problem}"
        problem = _choice_problem(tier_of_model, Tier.values)
        if problem:
            return f"Item {index} ({model}): tier: {problem}"
        if tier in TIER_RANK and TIER_RANK[tier_of_model] > TIER_RANK[tier]:
            return (f'Item {index} ({model}): tier "{tier_of_model}" is above the plan\'s tier "{tier}": its seats '
                    "could not call it.")
        if model in seen:
            return f"Item {index}: {model} is listed twice."
        seen.add(model)
    return None


def platforms_problem(value: object) -> str | None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(key, str) for key in value):
        return "Must be a list of platform keys."
    if len(value) > MAX_PLAN_PLATFORMS:
        return f"Must have at most {MAX_PLAN_PLATFORMS} items."
    if len(set(value)) != len(value):
        return "Must not repeat a platform."
    return None


def ai_plan_problems(values: dict[str, Any]) -> dict[str, list[str]]:
    """Every problem of a whole plan (``PLAN_FIELDS``, ``models``, ``platforms``) that needs no database, by field;
    empty when it has none. Across fields: the session budget is at most the weekly one; each model's tier is at
    or below the plan's."""
    problems: dict[str, list[str]] = {}
    for name, check in FIELD_CHECKS.items():
        problem = check(values.get(name))
        if problem:
            problems[name] = [problem]
    if "weekly_budget" not in problems and "session_budget" not in problems and (
        values["session_budget"] > values["weekly_budget"]
    ):
        problems["session_budget"] = [f"Must be at most weekly_budget ({format_money(values['weekly_budget'])})."]
    problem = models_problem(values.get("models"), tier=values.get("tier"))
    if problem:
        problems["models"] = [problem]
    problem = platforms_problem(values.get("platforms"))
    if problem:
        problems["platforms"] = [problem]
    return problems


def _catalogue_problems(
    values: dict[str, Any], *, plan_id: uuid.UUID | None, models_changed: bool
) -> tuple[dict[str, list[str]], list[Platform]]:
    """The problems only the database can tell (models not on any rate card, a model's tier against the other
    active plans, unknown platforms), and the platforms named."""
    problems: dict[str, list[str]] = {}
    names = [item["model"] for item in values["models"]]
    if models_changed and names:
        priced = selectors.models_on_rate_card(models=names)
        unknown = [name for name in names if name not in priced]
        if unknown:
            problems["models"] = [
                f"Not on any platform's rate card: {', '.join(unknown)}. Price the model first "
                "(POST /api/billing/admin/models/ or the admin), then list it here."
            ]
    if "models" not in problems and values["is_active"] and names:
        others = selectors.catalogue_model_tiers(models=names, exclude_plan_id=plan_id)
        disagree = []
        for item in values["models"]:
            other = next(((tier, slug) for tier, slug in others.get(item["model"], []) if tier != item["tier"]), None)
            if other is not None:
                disagree.append(f'{item["model"]} is "{other[0]}" in the plan "{other[1]}", not "{item["tier"]}"')
        if disagree:
            problems["models"] = [
                f"A model has one tier across the catalogue's active plans: {'; '.join(disagree)}."
            ]
    platforms: list[Platform] = []
    keys = list(values["platforms"])
    if keys:
        found = {p.platform_key: p for p in Platform.objects.filter(platform_key__in=keys)}
        missing = [key for key in keys if key not in found]
        if missing:
            problems["platforms"] = [f"No such platform: {', '.join(missing)}."]
        platforms = [found[key] for key in keys if key in found]
    return problems, platforms


def _conflicts(values: dict[str, Any], *, plan_id: uuid.UUID | None) -> dict[str, list[str]]:
    others = AIPlan.objects.exclude(pk=plan_id) if plan_id is not None else AIPlan.objects.all()
    conflicts: dict[str, list[str]] = {}
    if others.filter(slug=values["slug"]).exists():
        conflicts["slug"] = ["Already used by another AI plan."]
    if values["stripe_price_id"]:
        other = others.filter(stripe_price_id=values["stripe_price_id"]).values_list("slug", flat=True).first()
        if other is not None:
            conflicts["stripe_price_id"] = [f'Already used by the AI plan "{other}".']
    return conflicts


def ai_plan_check(
    values: dict[str, Any], *, plan_id: uuid.UUID | None = None, models_changed: bool = True
) -> dict[str, list[str]]:
    """Every problem a write of the whole plan ``values`` (``PLAN_FIELDS``, ``models``, ``platforms``) would find
    now, conflicts included, by field: for a form to show them before it writes. The services run the same checks
    again under the catalogue's lock."""
    problems = ai_plan_problems(values)
    if not problems:
        problems, _platforms = _catalogue_problems(values, plan_id=plan_id, models_changed=models_changed)
    return problems or _conflicts(values, plan_id=plan_id)


def _invalid(problems: dict[str, list[str]]) -> InvalidInput:
    return InvalidInput(f"Invalid input: {', '.join(problems)}.", details=problems)


def _normalized_models(models: object) -> object:
    """A copy of the models with ``display_name`` filled in ("" when not given), when their shape is valid."""
    if isinstance(models, (list, tuple)) and all(isinstance(item, dict) for item in models):
        return [{"display_name": ""} | dict(item) for item in models]
    return models


def _write(plan: AIPlan, values: dict[str, Any], platforms: list[Platform] | None, *, create: bool,
           replace_models: bool) -> None:
    try:
        with transaction.atomic():  # a unique violation (the lock makes it unexpected) is still a 409
            if create:
                plan.save(force_insert=True)
            else:
                plan.save(update_fields=[*PLAN_FIELDS, "updated_at"])
    except IntegrityError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "23505":  # not a unique violation: a bug, not a conflict
            raise
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) or ""
        field = "stripe_price_id" if "stripe" in constraint else "slug"
        raise AIPlanConflict(details={field: ["Already used by another AI plan."]}) from exc
    if replace_models:
        if not create:
            AIPlanModel.objects.filter(plan=plan).delete()
        AIPlanModel.objects.bulk_create(
            AIPlanModel(plan=plan, model=item["model"], display_name=item["display_name"], tier=item["tier"])
            for item in values["models"]
        )
    if platforms is not None:
        plan.platforms.set(platforms)


# --- the services ----------------------------------------------------------------------------------------------


def ai_plan_create(
    *,
    slug: str,
    name: str,
    tier: str,
    weekly_budget: Decimal,
    session_budget: Decimal,
    icon: str = "",
    overage: str = Overage.REFUSE,
    purchasable: bool = True,
    billing_cycle: str = BillingCycle.MONTHLY,
    price_per_seat_cents: int = 0,
    currency: str = "USD",
    stripe_price_id: str = "",
    is_active: bool = True,
    models: Sequence[dict[str, str]] = (),
    platforms: Sequence[str] = (),
    actor: AbstractBaseUser | None = None,
) -> AIPlan:
    """Adds an AI plan to the catalogue with its models (``{model, display_name, tier}``) and the keys of the
    platforms it is offered to (none: every platform). ``InvalidInput`` (400) for anything the module's rules
    refuse, ``AIPlanConflict`` (409) for a slug or Stripe price id in use. (``actor``: for a future audit trail.)"""
    arguments = locals()
    values = {field: arguments[field] for field in PLAN_FIELDS}
    values["models"] = _normalized_models(models)
    values["platforms"] = list(platforms) if isinstance(platforms, (list, tuple)) else platforms
    problems = ai_plan_problems(values)
    if problems:
        raise _invalid(problems)
    with transaction.atomic():
        locks.catalogue_lock()
        problems, found = _catalogue_problems(values, plan_id=None, models_changed=True)
        if problems:
            raise _invalid(problems)
        conflicts = _conflicts(values, plan_id=None)
        if conflicts:
            raise AIPlanConflict(f"Another AI plan already uses: {', '.join(conflicts)}.", details=conflicts)
        plan = AIPlan(**{field: values[field] for field in PLAN_FIELDS})
        _write(plan, values, found, create=True, replace_models=True)
    return plan


def ai_plan_update(
    *,
    ai_plan_id: uuid.UUID,
    slug: str = UNSET,
    name: str = UNSET,
    tier: str = UNSET,
    weekly_budget: Decimal = UNSET,
    session_budget: Decimal = UNSET,
    icon: str = UNSET,
    overage: str = UNSET,
    purchasable: bool = UNSET,
    billing_cycle: str = UNSET,
    price_per_seat_cents: int = UNSET,
    currency: str = UNSET,
    stripe_price_id: str = UNSET,
    is_active: bool = UNSET,
    models: Sequence[dict[str, str]] = UNSET,
    platforms: Sequence[str] = UNSET,
    actor: AbstractBaseUser | None = None,
) -> AIPlan:
    """Changes the given fields of an AI plan (the others stay); ``models`` and ``platforms``, when given,
    replace the plan's lists. The slug cannot change. ``AIPlanNotFound`` (404), ``InvalidInput`` (400),
    ``AIPlanConflict`` (409); nothing is written when a check fails."""
    arguments = locals()
    given = {field: arguments[field] for field in (*PLAN_FIELDS, "models", "platforms")
             if arguments[field] is not UNSET}
    if "models" in given:
        given["models"] = _normalized_models(given["models"])
    if isinstance(given.get("platforms"), tuple):
        given["platforms"] = list(given["platforms"])
    with transaction.atomic():
        locks.catalogue_lock()
        plan = AIPlan.objects.filter(pk=ai_plan_id).first()
        if plan is None:
            raise AIPlanNotFound(details={"ai_plan": str(ai_plan_id)})
        if not given:
            return plan  # nothing to change: nothing written
        current = {field: getattr(plan, field) for field in PLAN_FIELDS} | {
            "models": [{"model": m, "display_name": d, "tier": t}
                       for m, d, t in plan.models.values_list("model", "display_name", "tier").order_by("model")],
            "platforms": list(plan.platforms.values_list("platform_key", flat=True)),
        }
        values = current | given
        problems = ai_plan_problems(values)
        if "slug" in given and given["slug"] != plan.slug and "slug" not in problems:
            problems["slug"] = [f'Cannot be changed (it is "{plan.slug}"): create a new plan instead.']
        if problems:
            raise _invalid(problems)
        problems, found = _catalogue_problems(values, plan_id=plan.pk, models_changed="models" in given)
        if problems:
            raise _invalid(problems)
        conflicts = _conflicts(values, plan_id=plan.pk)
        if conflicts:
            raise AIPlanConflict(f"Another AI plan already uses: {', '.join(conflicts)}.", details=conflicts)
        for field in PLAN_FIELDS:
            setattr(plan, field, values[field])
        _write(plan, values, found if "platforms" in given else None, create=False,
               replace_models="models" in given)
    return plan
