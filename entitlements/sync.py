"""Seat subscriptions as their provider reports them: ``seat_subscription_sync``, the one writer of a provider's
(Stripe's) seat subscription. The payments app calls it for every subscription event, completed seat checkout and
refresh; the operator's contracts (provider ``manual``) are ``entitlements.services.seats_grant``'s.

The rules, in order:

- **Found by** (provider, provider subscription id), created when first reported. A subscription stays on its
  platform: a state naming another platform is refused (``SeatSyncRefused``). It may move to another AI plan (its
  price changed at the provider): both plans' seats change in the same transaction.
- **Under the seats lock** of its plan (``entitlements.locks.plan_seats_lock``; of both plans, in a fixed order,
  when it moves), so a concurrent assignment counts the seats before or after the change, never in between.
- **Ordered by the provider's time of the state** (``as_of``: a Stripe event's ``created``; a refresh: the moment
  it started reading the provider; None: now). A state older than the one applied last (``synced_at``) changes
  nothing, so duplicate and out-of-order deliveries are safe. ``synced_at`` is that time, moving only forward: when
  the provider last confirmed the subscription (not when this service wrote it). In the same second (Stripe's
  times are whole seconds) a state is applied, except one that reopens an ended subscription: Stripe never reopens
  a canceled subscription, so in a tie the end is the later state. (Two states in one second are otherwise
  indistinguishable; the periodic refresh settles them.)
- A **provisional** state (``provisional=True``: a completed checkout, which names the seats bought but no billing
  dates) creates the subscription when it is not recorded yet and never changes a recorded one. Its ``synced_at``
  stays empty, so the provider's first real state applies whatever its time.
- **Seats that stop counting**: a status ``canceled`` or ``expired``, or a quantity of 0 (Stripe allows it on an
  item). The quantity column is at least 1, so a quantity of 0 is stored as ``canceled`` keeping the last quantity
  (1 for a subscription first reported that way); a later state with seats reopens it.
- When a change leaves the plan with **no seats on the platform** (every subscription of it ended), its
  assignments are freed (``entitlements.services.assignments_clear``, under the same lock). A quantity lowered
  below the assignments keeps them: the plan is ``over_assigned`` and new assignments are refused until it is not.
- **Idempotent**: the same state again changes nothing (``changed`` False).

It opens a transaction that is not durable (a savepoint inside the webhook's transaction), like the
subscriptions app's services."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Platform
from entitlements import locks, selectors
from entitlements.models import SEATED_STATUSES, AIPlan, SeatProvider, SeatStatus, SeatSubscription
from entitlements.services import assignments_clear
from subscriptions.models import BillingCycle

_STATE_FIELDS = ("ai_plan_id", "quantity", "status", "billing_cycle", "provider_customer_id", "started_at",
                 "ends_at", "next_billing_at")
_ENDED_TICK = timedelta(microseconds=1)  # an end in the second a subscription started: just after its start


class SeatSyncRefused(ValueError):
    """A provider state that contradicts what is recorded (the subscription belongs to another platform)."""


def seat_subscription_sync(
    *,
    platform: Platform,
    ai_plan: AIPlan,
    provider: str,
    provider_subscription_id: str,
    provider_customer_id: str,
    quantity: int,
    status: str,
    billing_cycle: str,
    started_at: datetime,
    ends_at: datetime | None,
    next_billing_at: datetime | None,
    as_of: datetime | None = None,
    provisional: bool = False,
) -> tuple[SeatSubscription, bool]:
    """Records the provider's state of one seat subscription (see the module docstring); returns it and whether
    anything changed (created, or its plan, quantity, status, cycle, customer or dates)."""
    _check(provider=provider, provider_subscription_id=provider_subscription_id,
           provider_customer_id=provider_customer_id, quantity=quantity, status=status, billing_cycle=billing_cycle,
           started_at=started_at, ends_at=ends_at, next_billing_at=next_billing_at, as_of=as_of)
    state_time = None if provisional else (as_of or timezone.now())
    if quantity == 0:
        status = SeatStatus.CANCELED
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _sync(platform, ai_plan, provider, provider_subscription_id, provider_customer_id, quantity,
                             status, billing_cycle, started_at, ends_at, next_billing_at, state_time, provisional)
        except IntegrityError:
            # Its first report under another plan was inserted meanwhile (that transaction has committed): again,
            # now that it is recorded. (Any other integrity error repeats, and is raised the second time.)
            if attempt:
                raise
    raise AssertionError("unreachable")


def _sync(
    platform: Platform, ai_plan: AIPlan, provider: str, subscription_id: str, customer_id: str, quantity: int,
    status: str, billing_cycle: str, started_at: datetime, ends_at: datetime | None,
    next_billing_at: datetime | None, as_of: datetime | None, provisional: bool,
) -> tuple[SeatSubscription, bool]:
    rows = SeatSubscription.objects.filter(provider=provider, provider_subscription_id=subscription_id)
    known = rows.values_list("platform_id", "ai_plan_id").first()
    if known is not None and known[0] != platform.pk:
        raise SeatSyncRefused(f"{provider} subscription {subscription_id} is another platform's")
    plan_ids = {ai_plan.pk} | ({known[1]} if known else set())
    for plan_id in sorted(plan_ids, key=str):  # a fixed order: the plans' ids
        locks.plan_seats_lock(platform_id=platform.pk, ai_plan_id=plan_id)
    row = rows.first()  # read under the lock(s): whatever changed it before has committed
    if row is not None and row.platform_id != platform.pk:  # first recorded meanwhile, for another platform
        raise SeatSyncRefused(f"{provider} subscription {subscription_id} is another platform's")
    if row is not None and row.ai_plan_id not in plan_ids:  # moved by a writer that held only its other plan
        locks.plan_seats_lock(platform_id=platform.pk, ai_plan_id=row.ai_plan_id)
        plan_ids.add(row.ai_plan_id)

    if row is None:
        row = SeatSubscription(platform=platform, provider=provider, provider_subscription_id=subscription_id)
        before = None
    elif provisional or _is_stale(row, as_of, status):
        return row, False
    else:
        before = {name: getattr(row, name) for name in _STATE_FIELDS}
    was_seated_on = row.ai_plan_id if before is not None and row.status in SEATED_STATUSES else None

    start = min(row.started_at, started_at) if before is not None else started_at
    row.ai_plan_id = ai_plan.pk
    row.quantity = quantity if quantity > 0 else (row.quantity if before is not None else 1)
    row.status = status
    row.billing_cycle = billing_cycle
    row.provider_customer_id = customer_id or row.provider_customer_id
    row.started_at = start
    row.ends_at = None if ends_at is None else max(ends_at, start + _ENDED_TICK)
    row.next_billing_at = next_billing_at
    confirmed = as_of is not None and row.synced_at != as_of
    if as_of is not None:
        row.synced_at = as_of
    changed = before is None or any(before[name] != getattr(row, name) for name in _STATE_FIELDS)
    if before is None:
        row.save(force_insert=True)  # a concurrent first report may have inserted it: see the caller
    elif changed or confirmed:
        row.save(update_fields=[*_STATE_FIELDS, "synced_at", "updated_at"])

    if was_seated_on is not None and (row.status not in SEATED_STATUSES or row.ai_plan_id != was_seated_on):
        _free_if_seatless(platform, was_seated_on)
    return row, changed


def _is_stale(row: SeatSubscription, as_of: datetime | None, status: str) -> bool:
    if as_of is None or row.synced_at is None:
        return False
    if as_of < row.synced_at:
        return True
    reopens = row.status not in SEATED_STATUSES and status in SEATED_STATUSES
    return as_of == row.synced_at and reopens


def _free_if_seatless(platform: Platform, ai_plan_id: uuid.UUID) -> None:
    """The plan lost seats on the platform: when it has none left, its assignments are freed."""
    if selectors.seats_of(platform_id=platform.pk, ai_plan_id=ai_plan_id).total == 0:
        assignments_clear(platform=platform, ai_plan=AIPlan.objects.get(pk=ai_plan_id))


def _check(
    *, provider: object, provider_subscription_id: object, provider_customer_id: object, quantity: object,
    status: object, billing_cycle: object, started_at: object, ends_at: object, next_billing_at: object,
    as_of: object,
) -> None:
    if provider not in SeatProvider.values or provider == SeatProvider.MANUAL:
        raise ValueError(f"provider must be a payment provider, not {provider!r} (manual seats: seats_grant)")
    for name, value in (("provider_subscription_id", provider_subscription_id),
                        ("provider_customer_id", provider_customer_id)):
        if not isinstance(value, str) or len(value) > 255 or (name == "provider_subscription_id" and not value):
            raise ValueError(f"{name} must be a provider id (text, at most 255 characters); got {value!r}")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValueError(f"quantity must be a whole number of seats, 0 or more; got {quantity!r}")
    if status not in SeatStatus.values:
        raise ValueError(f"status must be one of {SeatStatus.values}; got {status!r}")
    if billing_cycle not in BillingCycle.values:
        raise ValueError(f"billing_cycle must be one of {BillingCycle.values}; got {billing_cycle!r}")
    for name, value, optional in (("started_at", started_at, False), ("ends_at", ends_at, True),
                                  ("next_billing_at", next_billing_at, True), ("as_of", as_of, True)):
        if value is None and optional:
            continue
        if not isinstance(value, datetime) or timezone.is_naive(value):
            raise ValueError(f"{name} must be an aware datetime; got {value!r}")
