"""What a plan's values may be: one set of checks for the services, the API serializers and the admin form.

Each ``*_problem`` function returns the message for a bad value, or None when the value is acceptable; it
checks the Python type too (a bool is not a number, a float never a price), so a service can run it on
whatever it was handed. ``plan_problems`` checks a whole plan, field by field and across fields.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.db import models

from billing_service.inputs import is_json_int, text_problem
from billing_service.money import MAX_AMOUNT, QUANTUM


class RolloverPolicy(models.TextChoices):
    """What happens to a plan's unused credits at a period's end (``subscriptions.models.Plan.rollover_policy``;
    defined here, with the plan's other rules, so that this module and the models import nothing of each other's
    but this one way)."""

    NONE = "none", "None: unused plan credits lapse at period end"
    ALL = "all", "All: unused plan credits carry over"
    CAPPED = "capped", "Capped: carry over up to rollover_cap"


SLUG_MAX_LENGTH = 50
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
# ``current_plan`` reports "free_trial" for an account without a subscription: no plan may be called that.
RESERVED_SLUGS = frozenset({"free_trial"})
SLUG_HELP = (
    "1-50 lowercase letters, digits, '-' or '_', starting with a letter or digit; unique in the platform and "
    'fixed once created (it is what `current_plan` reports). "free_trial" is reserved.'
)
NAME_MAX_LENGTH = 100
DESCRIPTION_MAX_LENGTH = 2000
MAX_PRICE_CENTS = 100_000_000_000  # 1,000,000,000.00 USD: the largest amount the service handles anywhere
MAX_FEATURES = 50
FEATURE_MAX_LENGTH = 200
MAX_SORT_ORDER = 1_000_000
PROVIDER_ID_MAX_LENGTH = 255
PROVIDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
STRIPE_PRICE_PREFIX = "price_"
# A legacy Stripe Plan id is accepted wherever a price id is (Stripe treats plans as prices).
STRIPE_PRICE_PREFIXES = (STRIPE_PRICE_PREFIX, "plan_")
SUPPORTED_CURRENCIES = ("USD",)

def is_int(value: object) -> bool:
    return is_json_int(value)


def slug_problem(value: object) -> str | None:
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value):
        return SLUG_HELP
    if value in RESERVED_SLUGS:
        return f'"{value}" is reserved: it stands for "no plan" in current_plan and previous_plan.'
    return None


def cents_problem(value: object) -> str | None:
    if not is_int(value):
        return "Must be a whole number of cents (a JSON integer), e.g. 999 for 9.99."
    if value < 0:
        return "Must be at least 0."
    if value > MAX_PRICE_CENTS:
        return f"Must be at most {MAX_PRICE_CENTS}."
    return None


def credits_problem(value: object, *, positive: bool = False) -> str | None:
    """A credit amount: a finite Decimal with at most 6 decimals, 0 (or above 0 with ``positive``) to 10^9."""
    if isinstance(value, bool) or not isinstance(value, Decimal) or not value.is_finite():
        return 'Must be a decimal number given as a string, e.g. "1000.00".'
    if value != value.quantize(QUANTUM):
        return "Ensure that there are no more than 6 decimal places."
    if value < 0 or (positive and value == 0):
        return "Must be greater than zero." if positive else "Must be at least 0."
    if value > MAX_AMOUNT:
        return f"Must be at most {MAX_AMOUNT}."
    return None


def features_problem(value: object) -> str | None:
    if not isinstance(value, list):
        return "Must be a list of strings."
    if len(value) > MAX_FEATURES:
        return f"Must have at most {MAX_FEATURES} items."
    for index, item in enumerate(value):
        if not isinstance(item, str):
            return f"Item {index}: must be a string."
        problem = text_problem(item, max_length=FEATURE_MAX_LENGTH, blank=False)
        if problem:
            return f"Item {index}: {problem}"
    if len(set(value)) != len(value):
        return "Must not repeat an item."
    return None


def provider_id_problem(value: object, *, prefix: str | tuple[str, ...] = "") -> str | None:
    """An external id (Stripe price, Creem product): "" for none."""
    if not isinstance(value, str):
        return 'Must be a string ("" for none).'
    if value == "":
        return None
    if len(value) > PROVIDER_ID_MAX_LENGTH:
        return f"Ensure this field has no more than {PROVIDER_ID_MAX_LENGTH} characters."
    if not PROVIDER_ID_RE.fullmatch(value):
        return "Must contain only letters, digits, '_' and '-'."
    if prefix and not value.startswith(prefix):
        starts = " or ".join(f'"{p}"' for p in ((prefix,) if isinstance(prefix, str) else prefix))
        return f"Must be a Stripe price id, starting with {starts}."
    return None


def bool_problem(value: object) -> str | None:
    return None if isinstance(value, bool) else "Must be true or false."


def sort_order_problem(value: object) -> str | None:
    if not is_int(value) or not 0 <= value <= MAX_SORT_ORDER:
        return f"Must be a whole number from 0 to {MAX_SORT_ORDER}."
    return None


def currency_problem(value: object) -> str | None:
    if value not in SUPPORTED_CURRENCIES:
        return f"Must be one of: {', '.join(SUPPORTED_CURRENCIES)}."
    return None


def rollover_policy_problem(value: object) -> str | None:
    if value not in RolloverPolicy.values:
        return f"Must be one of: {', '.join(RolloverPolicy.values)}."
    return None


def rollover_cap_problem(value: object) -> str | None:
    return None if value is None else credits_problem(value, positive=True)


FIELD_CHECKS = {
    "slug": slug_problem,
    "name": lambda v: text_problem(v, max_length=NAME_MAX_LENGTH, blank=False),
    "description": lambda v: text_problem(v, max_length=DESCRIPTION_MAX_LENGTH, multiline=True),
    "price_monthly": cents_problem,
    "price_yearly": cents_problem,
    "currency": currency_problem,
    "credits_included": credits_problem,
    "features": features_problem,
    "free_trial": bool_problem,
    "unlimited_credits": bool_problem,
    "rollover_policy": rollover_policy_problem,
    "rollover_cap": rollover_cap_problem,
    "purchasable": bool_problem,
    "is_active": bool_problem,
    "stripe_price_monthly": lambda v: provider_id_problem(v, prefix=STRIPE_PRICE_PREFIXES),
    "stripe_price_yearly": lambda v: provider_id_problem(v, prefix=STRIPE_PRICE_PREFIXES),
    "creem_product_id": provider_id_problem,
    "sort_order": sort_order_problem,
}
PLAN_FIELDS = tuple(FIELD_CHECKS)


def plan_problems(values: dict[str, Any]) -> dict[str, list[str]]:
    """Every problem of a whole plan (all of ``PLAN_FIELDS``), by field; empty when the plan is valid.

    Across fields: ``rollover_cap`` is required when ``rollover_policy`` is "capped" and must be null
    otherwise; a plan's monthly and yearly Stripe prices are different prices."""
    problems: dict[str, list[str]] = {}
    for name, check in FIELD_CHECKS.items():
        problem = check(values.get(name))
        if problem:
            problems[name] = [problem]
    if "rollover_policy" not in problems and "rollover_cap" not in problems:
        capped = values["rollover_policy"] == "capped"
        if capped and values["rollover_cap"] is None:
            problems["rollover_cap"] = ['Required when rollover_policy is "capped".']
        elif not capped and values["rollover_cap"] is not None:
            problems["rollover_cap"] = ['Must be null unless rollover_policy is "capped".']
    monthly, yearly = values.get("stripe_price_monthly"), values.get("stripe_price_yearly")
    if monthly and monthly == yearly and "stripe_price_yearly" not in problems:
        problems["stripe_price_yearly"] = [
            "Must differ from stripe_price_monthly: a Stripe price has one interval."
        ]
    return problems
