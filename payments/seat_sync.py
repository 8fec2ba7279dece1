"""Seats bought through Stripe, the payments side: what a Stripe subscription of seats holds, read the same way
whether a webhook brought it or a refresh read it; a quantity change asked of Stripe; and the refresh.

- ``seat_state_apply``: the one rule from a Stripe subscription (``stripe_events.SubscriptionFacts``) to its seats,
  recorded by ``entitlements.sync.seat_subscription_sync`` (which orders states by their time and keeps the seats
  lock). Statuses: ``active``, ``trialing`` -> active; ``past_due``, ``unpaid``, ``paused`` -> past_due (the seats
  stay while Stripe retries); ``canceled`` (and every ``customer.subscription.deleted``) -> canceled;
  ``incomplete_expired`` -> expired; ``incomplete`` -> not started (nothing recorded). The quantity is the item's
  (the item of the plan's price, else the first); ``current_period_end`` is the next billing unless the
  subscription is set to end (``cancel_at``, or ``cancel_at_period_end``: then it ends there and bills no more); an
  ended one ends at ``ended_at`` (else ``canceled_at``, else the state's time). The cycle is the price's interval
  (month, year), else the plan's.
- ``seat_target``: the platform (``metadata.platform_id``) and AI plan a subscription's seats are on: the plan whose
  ``stripe_price_id`` its item is (the plan may have changed at Stripe), else ``metadata.ai_plan_id``.
- ``seat_checkout_apply``: a completed seats checkout records its seats provisionally (created when not recorded
  yet; the subscription's own events and the refresh bring its dates and any later change).
- ``seat_quantity_change``: asks Stripe for another quantity (prorated as Stripe does); nothing local changes until
  Stripe's event, or a refresh, confirms it.
- ``seat_subscriptions_refresh``: reads from Stripe every subscription of the platform's seat customers (whatever
  its status) that is of seats (``metadata.kind``) or already recorded, and each recorded one not found that way,
  and records each (its time: the moment its read began, so an event Stripe made meanwhile is never overridden).
  Safe beside itself and the webhooks: the seats lock and the ordering by time make any interleaving converge.

Nothing here holds a transaction or a lock across a call to Stripe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from accounts.models import Platform
from billing_service.inputs import uuid_or_none
from entitlements import selectors as seat_selectors
from entitlements.models import SEATED_STATUSES, AIPlan, SeatProvider, SeatStatus, SeatSubscription
from entitlements.sync import SeatSyncRefused, seat_subscription_sync
from payments import selectors
from payments.errors import (
    PaymentProviderError,
    SeatSubscriptionEnded,
    SeatSubscriptionManual,
    SeatSubscriptionNotFound,
)
from payments.models import Order
from payments.providers import stripe as stripe_provider
from payments.providers.lookups import epoch_seconds
from payments.providers.stripe_events import SEATS_KIND, SubscriptionFacts, subscription_object_facts
from subscriptions.models import BillingCycle

logger = logging.getLogger(__name__)

MAX_SEATS = 10_000  # seats one checkout, or one quantity change, may ask for
STRIPE_SEAT_STATUSES = {
    "trialing": SeatStatus.ACTIVE,
    "active": SeatStatus.ACTIVE,
    "past_due": SeatStatus.PAST_DUE,
    "unpaid": SeatStatus.PAST_DUE,
    "paused": SeatStatus.PAST_DUE,
    "canceled": SeatStatus.CANCELED,
    "incomplete_expired": SeatStatus.EXPIRED,
}
_CYCLES = {"month": BillingCycle.MONTHLY, "year": BillingCycle.YEARLY}
_ENDED = (SeatStatus.CANCELED, SeatStatus.EXPIRED)


class SeatStateInvalid(ValueError):
    """A Stripe subscription this service cannot read seats from (no quantity), or one it may not record."""


@dataclass(frozen=True, slots=True)
class SeatTarget:
    platform: Platform
    ai_plan: AIPlan


@dataclass(frozen=True, slots=True)
class Applied:
    subscription: SeatSubscription | None  # None: nothing recorded (not started yet)
    changed: bool
    note: str = ""


def seat_target(facts: SubscriptionFacts, *, platform: Platform | None = None) -> SeatTarget | None:
    """The platform and AI plan of a Stripe subscription of seats; None when it names none of this service's.
    ``platform``: the one it was found for (a refresh: under that platform's customer), used when its metadata
    names no platform; a subscription whose metadata names another platform is not that platform's (None)."""
    named = facts.metadata.get("platform_id", "")
    if named:
        platform_pk = int(named) if named.isascii() and named.isdigit() and len(named) <= 18 else None
        if platform is not None and platform_pk != platform.pk:
            return None
        if platform is None and platform_pk is not None:
            platform = Platform.objects.filter(pk=platform_pk).first()
    if platform is None:
        return None
    ai_plan = AIPlan.objects.filter(stripe_price_id=facts.price_id).first() if facts.price_id else None
    if ai_plan is None:
        plan_id = uuid_or_none(facts.metadata.get("ai_plan_id"))
        ai_plan = AIPlan.objects.filter(pk=plan_id).first() if plan_id is not None else None
    return SeatTarget(platform, ai_plan) if ai_plan is not None else None


def seat_state_apply(
    facts: SubscriptionFacts, *, target: SeatTarget, as_of: datetime | None, deleted: bool = False,
    noted: bool = True,
) -> Applied:
    """Records the seats of a Stripe subscription's state at ``as_of`` (see the module docstring). Raises
    ``SeatStateInvalid`` for a state without a quantity, or one naming another platform's subscription.
    ``noted``: the result says what happened (a webhook event's note; over-assigned seats read for it)."""
    status = SeatStatus.CANCELED if deleted else STRIPE_SEAT_STATUSES.get(facts.status)
    if status is None:
        return Applied(None, False, f"status {facts.status!r}: not started yet")
    if facts.quantity is None or facts.quantity < 0:
        raise SeatStateInvalid(f"subscription {facts.subscription_id} names no quantity of seats")
    moment = as_of or timezone.now()
    started = epoch_seconds(facts.start_date) or epoch_seconds(facts.created) or moment
    period_end = epoch_seconds(facts.current_period_end)
    if status in _ENDED:
        ends_at = epoch_seconds(facts.ended_at) or epoch_seconds(facts.canceled_at) or moment
        next_billing = None
    else:
        ends_at = epoch_seconds(facts.cancel_at) or (period_end if facts.cancel_at_period_end else None)
        next_billing = None if ends_at is not None else period_end
    try:
        row, changed = seat_subscription_sync(
            platform=target.platform, ai_plan=target.ai_plan, provider=SeatProvider.STRIPE,
            provider_subscription_id=facts.subscription_id, provider_customer_id=facts.customer_id,
            quantity=facts.quantity, status=status, billing_cycle=_CYCLES.get(facts.interval,
                                                                             target.ai_plan.billing_cycle),
            started_at=started, ends_at=ends_at, next_billing_at=next_billing, as_of=as_of,
        )
    except SeatSyncRefused as exc:
        raise SeatStateInvalid(str(exc)) from exc
    return Applied(row, changed, _note(row, changed, as_of) if noted else "")


def _note(row: SeatSubscription, changed: bool, as_of: datetime | None) -> str:
    if not changed:
        older = as_of is not None and row.synced_at is not None and as_of < row.synced_at
        return "an older state than the one recorded: nothing changed" if older else "already recorded"
    if row.status not in SEATED_STATUSES:
        return f"{row.status}: its seats no longer count"
    seats = seat_selectors.seats_of(platform_id=row.platform_id, ai_plan_id=row.ai_plan_id)
    if seats.over_assigned:
        return (f"{row.quantity} seats: the plan is over-assigned by {seats.over_assigned} (assignments kept, new "
                "ones refused)")
    return f"{row.quantity} seats, {row.status}"


def seat_checkout_apply(order: Order, *, subscription_id: str, customer_id: str, as_of: datetime | None) -> Applied:
    """The seats a paid seats checkout bought, recorded provisionally: created from the order (its plan and
    quantity, active) unless the subscription's events recorded it first; never changing a recorded one."""
    row, changed = seat_subscription_sync(
        platform=order.platform, ai_plan=order.ai_plan, provider=SeatProvider.STRIPE,
        provider_subscription_id=subscription_id, provider_customer_id=customer_id, quantity=order.quantity,
        status=SeatStatus.ACTIVE, billing_cycle=order.billing_cycle or order.ai_plan.billing_cycle,
        started_at=as_of or timezone.now(), ends_at=None, next_billing_at=None, provisional=True,
    )
    return Applied(row, changed, "" if changed else "its subscription's events recorded the seats first")


# --- a quantity change, asked of Stripe --------------------------------------------------------------------------


def seat_quantity_change(*, platform: Platform, subscription_id: str, quantity: int) -> SeatSubscription:
    """Asks Stripe to set the seats of the platform's subscription ``subscription_id`` to ``quantity`` (prorated
    as Stripe does). Returns the subscription as recorded, unchanged: its quantity changes when Stripe's event (or
    a refresh) confirms it. 404 for no such subscription of the platform, 409 for an operator's contract
    (``seats_grant`` changes those) or an ended subscription, 502 when Stripe refuses or fails."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_SEATS:
        raise ValueError(f"quantity must be a whole number of seats from 1 to {MAX_SEATS}; got {quantity!r}")
    row = selectors.seat_subscription_get(platform=platform, subscription_id=subscription_id)
    if row is None:
        raise SeatSubscriptionNotFound()
    if row.provider == SeatProvider.MANUAL:
        raise SeatSubscriptionManual(details={"subscription_id": str(row.pk)})
    if row.status not in SEATED_STATUSES:
        raise SeatSubscriptionEnded(details={"subscription_id": str(row.pk), "status": row.status})
    stripe_provider.ensure_configured()
    found = stripe_provider.subscription_retrieve(subscription_id=row.provider_subscription_id)
    facts = subscription_object_facts(found, price_id=row.ai_plan.stripe_price_id) if found else None
    if facts is None or not facts.item_id:
        raise PaymentProviderError(
            "Stripe has no item of this subscription to change.",
            details={"provider": "stripe", "subscription_id": str(row.pk)},
        )
    if facts.status in ("canceled", "incomplete_expired"):
        raise SeatSubscriptionEnded(details={"subscription_id": str(row.pk), "status": facts.status})
    stripe_provider.subscription_item_quantity_set(
        subscription_id=row.provider_subscription_id, item_id=facts.item_id, quantity=quantity
    )
    return row


# --- refresh from Stripe -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshResult:
    plans_updated: int  # AI plans whose seats changed
    seats_updated: int  # seat subscriptions whose recorded state changed (created, quantity, status, dates...)
    timestamp: datetime  # when the refresh began reading Stripe


def seat_subscriptions_refresh(*, platform: Platform) -> RefreshResult:
    """Reads the platform's seat subscriptions from Stripe and records what changed (see the module docstring).
    Raises ``PaymentProviderError`` when Stripe fails (what was recorded before stays: each subscription is
    recorded in its own transaction), ``PaymentProviderNotConfigured`` when there is something to read and no
    Stripe."""
    started = timezone.now()
    known = dict(
        SeatSubscription.objects.filter(platform=platform, provider=SeatProvider.STRIPE)
        .values_list("provider_subscription_id", "pk")
    )
    customers = selectors.seat_customers_of(platform=platform)
    if not known and not customers:
        return RefreshResult(plans_updated=0, seats_updated=0, timestamp=started)
    stripe_provider.ensure_configured()
    changed: list[SeatSubscription] = []
    seen: set[str] = set()
    for customer_id in customers:
        as_of = timezone.now()
        for found in stripe_provider.customer_subscriptions(customer_id=customer_id):
            facts = subscription_object_facts(found)
            if facts.subscription_id in seen or (
                    facts.metadata.get("kind") != SEATS_KIND and facts.subscription_id not in known):
                continue
            seen.add(facts.subscription_id)
            changed += _refreshed(platform, facts, as_of)
    for subscription_id in sorted(set(known) - seen):  # under no customer of the platform's (or none recorded)
        as_of = timezone.now()
        found = stripe_provider.subscription_retrieve(subscription_id=subscription_id)
        if found is None:
            logger.warning("seat subscription %s of platform %s is unknown to Stripe", subscription_id, platform.pk)
            continue
        changed += _refreshed(platform, subscription_object_facts(found), as_of)
    return RefreshResult(plans_updated=len({row.ai_plan_id for row in changed}), seats_updated=len(changed),
                         timestamp=started)


def _refreshed(platform: Platform, facts: SubscriptionFacts, as_of: datetime) -> list[SeatSubscription]:
    target = seat_target(facts, platform=platform)
    if target is None:
        return []
    try:
        applied = seat_state_apply(facts, target=target, as_of=as_of, noted=False)
    except SeatStateInvalid as exc:
        logger.warning("seat subscription %s of platform %s not refreshed: %s", facts.subscription_id, platform.pk,
                       exc)
        return []
    return [applied.subscription] if applied.changed and applied.subscription is not None else []
