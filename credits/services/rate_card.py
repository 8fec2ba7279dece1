"""The rate card: per-model prices in credits per million input and output tokens, kept as versions.

A price change is a new ``ModelPrice`` row with its own ``effective_from``; rows are never edited or
deleted, so every usage event's ``price`` keeps explaining its charge. Rules:

- ``effective_from`` defaults to now and may lie in the future (a scheduled change).
- It may not lie more than ``PAST_TOLERANCE`` (one minute: clock skew between the caller and us) in the
  past while an earlier version of the model exists: the new version would take over instants that the
  earlier one already priced, and events charged then would look mispriced. Within the tolerance a version
  can still cover an event charged in the last minute; that event keeps its own ``price`` reference.
- Where no earlier version exists, nothing in that stretch of time was priced from the card, so a version
  may start in the past: a model's first price, to price usage reported late (``occurred_at``), or a price
  for the time before the model's earliest version.
- It may not lie before 2000-01-01 UTC (``billing_service.inputs.EARLIEST_INSTANT``), nor more than
  ``MAX_FUTURE`` (five years) ahead: a version can never be withdrawn, so a typo in
  the year would otherwise stay on the card for good.
- Two versions of one model at exactly the same instant (to the microsecond) are a conflict (409).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Platform
from billing_service.errors import InvalidInput
from billing_service.inputs import stored_instant_problem
from billing_service.money import MAX_AMOUNT, QUANTUM, format_money
from credits.errors import ModelPriceConflict
from credits.models import ModelPrice
from credits.selectors import PriceVersion, rate_card_models
from credits.services.common import actor_id_of

PAST_TOLERANCE = timedelta(minutes=1)
MAX_FUTURE = timedelta(days=5 * 365)
MODEL_NAME_MAX_LENGTH = 100
# What AI model identifiers look like: "gpt-4o-mini", "meta-llama/Llama-3-70b", "llama3.1:8b",
# "claude-3-5-sonnet@20240620". No whitespace, no control characters, no "?" or "#"; "/" only between
# segments that start with a letter or digit (so no "//", "./" or "../" that a URL could rewrite).
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]*(?:/[A-Za-z0-9][A-Za-z0-9._:@+-]*)*$")
MODEL_NAME_HELP = (
    "1-100 characters: letters, digits and . _ : @ + -, in segments separated by single slashes, each starting "
    "with a letter or digit; matched exactly (case-sensitive) against the model named in usage records."
)
UNIQUE_CONSTRAINT = "model_price_one_version_per_instant"


def is_valid_model_name(model: object) -> bool:
    return (
        isinstance(model, str)
        and len(model) <= MODEL_NAME_MAX_LENGTH
        and MODEL_NAME_RE.fullmatch(model) is not None
    )


def _require_price(value: Decimal, name: str) -> Decimal:
    if (
        not isinstance(value, Decimal)
        or not value.is_finite()
        or value < 0
        or value > MAX_AMOUNT
        or value != value.quantize(QUANTUM)
    ):
        raise ValueError(
            f"{name} must be a finite Decimal in 0..{MAX_AMOUNT} with at most 6 decimals, got {value!r}"
        )
    return value


def effective_from_problem(
    *, platform_id: int, model: str, effective_from: datetime, now: datetime
) -> str | None:
    """Why ``effective_from`` is refused (a message for the field), or None when it is acceptable."""
    if problem := stored_instant_problem(effective_from, now=now, future=MAX_FUTURE):
        return problem
    if (
        effective_from < now - PAST_TOLERANCE
        and ModelPrice.objects.filter(
            platform_id=platform_id, model=model, effective_from__lt=effective_from
        ).exists()
    ):
        return (
            f"Must not be more than {int(PAST_TOLERANCE.total_seconds())} seconds in the past (now is "
            f"{_iso(now)}): an earlier version of this model priced usage since then, and a price change never "
            "applies to usage already charged. Omit it to start now."
        )
    return None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def model_price_version_at(*, platform_id: int, model: str, effective_from: datetime) -> ModelPrice | None:
    """The version of ``model`` taking effect at exactly ``effective_from``, if any."""
    return ModelPrice.objects.filter(
        platform_id=platform_id, model=model, effective_from=effective_from
    ).first()


def _conflict(existing: ModelPrice | None, model: str, effective_from: datetime) -> ModelPriceConflict:
    details = {"model": model, "effective_from": _iso(effective_from)}
    if existing is not None:
        details |= {
            "existing_version_id": existing.pk,
            "input_per_million": format_money(existing.input_per_million),
            "output_per_million": format_money(existing.output_per_million),
        }
    return ModelPriceConflict(details=details)


@transaction.atomic
def model_price_create(
    *,
    platform: Platform,
    model: str,
    input_per_million: Decimal,
    output_per_million: Decimal,
    effective_from: datetime | None = None,
    description: str = "",
    actor: AbstractBaseUser | None,
) -> ModelPrice:
    """Adds a version of ``model``'s price from ``effective_from`` (default: now) on; see the module rules.

    Raises ``InvalidInput`` (400) for an ``effective_from`` out of bounds and ``ModelPriceConflict`` (409)
    when the model already has a version at that instant; ``ValueError`` for arguments a caller should have
    validated (model name, prices, an unaware datetime).
    """
    if not is_valid_model_name(model):
        raise ValueError(f"invalid model name {model!r}")
    _require_price(input_per_million, "input_per_million")
    _require_price(output_per_million, "output_per_million")
    if not isinstance(description, str) or len(description) > 200:
        raise ValueError("description must be a string of at most 200 characters")
    now = timezone.now()
    if effective_from is None:
        effective_from = now
    elif timezone.is_naive(effective_from):
        raise ValueError("effective_from must be timezone-aware")
    problem = effective_from_problem(
        platform_id=platform.pk, model=model, effective_from=effective_from, now=now
    )
    if problem:
        raise InvalidInput("Invalid input: effective_from.", details={"effective_from": [problem]})
    existing = model_price_version_at(platform_id=platform.pk, model=model, effective_from=effective_from)
    if existing is not None:
        raise _conflict(existing, model, effective_from)
    try:
        with transaction.atomic():  # a savepoint: a concurrent twin loses on the unique constraint
            return ModelPrice.objects.create(
                platform=platform,
                model=model,
                input_per_million=input_per_million,
                output_per_million=output_per_million,
                effective_from=effective_from,
                description=description,
                created_by_id=actor_id_of(actor),
            )
    except IntegrityError as exc:
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) == UNIQUE_CONSTRAINT:
            raise _conflict(None, model, effective_from) from None
        raise


@transaction.atomic
def model_price_version_create(
    *,
    platform: Platform,
    model: str,
    input_per_million: Decimal,
    output_per_million: Decimal,
    effective_from: datetime | None = None,
    description: str = "",
    actor: AbstractBaseUser | None,
) -> PriceVersion:
    """``model_price_create``, answered as the rate card shows the new version (its status and the instant the
    next version takes over), read in the same transaction: nothing is left to read once it has committed."""
    price = model_price_create(
        platform=platform, model=model, input_per_million=input_per_million,
        output_per_million=output_per_million, effective_from=effective_from, description=description, actor=actor,
    )
    (entry,) = rate_card_models(platform_id=platform.pk, models=[price.model], at=timezone.now())
    return next(version for version in entry.versions if version.price.pk == price.pk)
