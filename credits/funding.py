"""Usage paid by something other than credits: an account marked ``external_funding`` (a member holding a seat;
the entitlements app keeps the mark) offers each usage charge and each hold to ``settings.CREDITS_USAGE_FUNDER``
first. The funder pays what it will (a seat: within its budgets), refuses (a budget exceeded, a model not
entitled: the request fails and writes nothing), and the credits pay the rest as usual. Credits does not import
the funder's app: the setting names it, as ``CREDITS_LOW_BALANCE_HOOK`` names payments' hook.

Every usage path asks in two steps, inside its transaction, under the account's lock: ``quote`` (what the funder
would pay, for each request in order, each seeing the ones before it) before the credits are charged, then
``record`` of the quotes whose events were accepted, so a batch event refused for want of credits leaves no
trace with the funder either."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from billing_service.errors import DomainError

SPEND = "spend"  # a usage event's cost
RESERVE = "reserve"  # a hold's amount
CAPTURE = "capture"  # a funded hold captured at its cost: the reservation ``held`` becomes spending
RELEASE = "release"  # a funded hold released or expired: ``held`` given back


@dataclass(frozen=True, slots=True)
class FundingRequest:
    kind: str
    account_id: uuid.UUID
    amount: Decimal = Decimal(0)  # the exact cost (spend, capture) or the hold's amount (reserve)
    model: str = ""
    hold_id: uuid.UUID | None = None
    held: Decimal = Decimal(0)  # capture, release: what the hold reserved with the funder
    event_id: uuid.UUID | None = None  # the usage event the charge pays for (spend, capture)


@dataclass(slots=True)
class Funded:
    """The funder's answer to one request: it pays ``amount`` of it (0 up to the request's amount); the
    credits pay the rest. ``ref`` is recorded on the usage event (``funded_by``)."""

    request: FundingRequest
    amount: Decimal
    ref: str
    state: Any = field(default=None, repr=False)  # the funder's own, for ``record``


class UsageFunder(Protocol):
    def quote(self, requests: Sequence[FundingRequest], now: datetime) -> list[Funded | DomainError]: ...

    def record(self, funded: Sequence[Funded], now: datetime) -> None: ...


@lru_cache(maxsize=1)
def usage_funder() -> UsageFunder | None:
    """``settings.CREDITS_USAGE_FUNDER`` (a dotted path to a UsageFunder), or None without one."""
    path = getattr(settings, "CREDITS_USAGE_FUNDER", "")
    return import_string(path)() if path else None


def fund_one(request: FundingRequest, now: datetime) -> Funded | None:
    """One request quoted (a refusal raised); None without a funder (nothing funded, the credits pay)."""
    funder = usage_funder()
    if funder is None:
        return None
    (answer,) = funder.quote([request], now)
    if isinstance(answer, DomainError):
        raise answer
    return answer


def record(funded: Sequence[Funded | None], now: datetime) -> None:
    """Records the accepted quotes with the funder that gave them."""
    accepted = [f for f in funded if f is not None]
    if accepted:
        usage_funder().record(accepted, now)
