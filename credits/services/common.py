"""Small argument helpers shared by the services."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser


def actor_id_of(actor: AbstractBaseUser | None) -> int | None:
    return actor.pk if actor is not None and actor.is_authenticated else None


def require_positive(amount: Decimal, name: str = "amount") -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValueError(f"{name} must be a positive finite Decimal, got {amount!r}")
    return amount
