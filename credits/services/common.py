"""Small argument helpers shared by the services."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser


def actor_id_of(actor: AbstractBaseUser | None) -> int | None:
    return actor.pk if actor is not None and actor.is_authenticated else None


def require_positive(amount: Decimal, name: str = "amount") -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValueError(f"{name} must be a positive finite Decimal, got {amount!r}")
    return amount


_KEY_MAX = 255  # LedgerEntry.idempotency_key


def call_key(request_id: str) -> str:
    """The ledger key of an AI call's ``request_id``: of its hold's ``reserve`` row or of its direct usage
    debit. One namespace for both, so a request_id names one call: a direct usage call whose request_id is a
    hold's meets that hold's row (409 ``request_id_held``), never a second charge. Within the key's 255
    characters whatever the request_id's length."""
    key = f"usage:{request_id}"
    if len(key) <= _KEY_MAX:
        return key
    return f"usage-sha256:{hashlib.sha256(request_id.encode()).hexdigest()}"
