"""Every write of the entitlements app: seats recorded by an operator, and seats assigned to members.

Assignments (``seat_assign`` / ``seat_unassign``) run under the plan's seats lock (``entitlements.locks``), so
concurrent assignments can never exceed the seats: each counts the seats and assignments after the one before it
committed. A member holds at most one seat per platform (a database constraint too). When a quantity drops below
the assignments (the provider lowered it, or an operator did), the assignments are kept, new ones are refused
(``no_seat_available``) and the plan reports ``over_assigned`` until an admin frees seats: taking a seat away
from someone in the middle of their work is a decision for a person, not for a webhook."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Membership, Platform
from credits.services import external_funding_set
from entitlements import locks, selectors
from entitlements.errors import NoSeatAvailable, NotAPlatformMember, SeatAlreadyAssigned, SeatNotAssigned
from entitlements.models import SEATED_STATUSES, AIPlan, SeatAssignment, SeatProvider, SeatStatus, SeatSubscription


def seats_grant(
    *, platform: Platform, ai_plan: AIPlan, quantity: int, until: datetime | None = None
) -> tuple[SeatSubscription, bool]:
    """Records (or changes) the operator's contract for ``quantity`` seats of ``ai_plan`` on the platform, paid
    outside Stripe: the platform's one manual subscription of the plan, active until ``until`` (None: ongoing).
    Idempotent: run again to change the quantity or the end. Returns it and whether it was created."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ValueError(f"quantity must be a whole number of seats, at least 1; got {quantity!r}")
    now = timezone.now()
    if until is not None and (timezone.is_naive(until) or until <= now):
        raise ValueError("until must be an aware moment in the future")
    with transaction.atomic(durable=True):
        locks.plan_seats_lock(platform_id=platform.pk, ai_plan_id=ai_plan.pk)
        subscription, created = SeatSubscription.objects.get_or_create(
            platform=platform, ai_plan=ai_plan, provider=SeatProvider.MANUAL,
            defaults={"quantity": quantity, "started_at": now, "ends_at": until, "billing_cycle": ai_plan.billing_cycle},
        )
        if not created:
            subscription.quantity, subscription.ends_at, subscription.status = quantity, until, SeatStatus.ACTIVE
            subscription.save(update_fields=["quantity", "ends_at", "status", "updated_at"])
    return subscription, created


def seats_expire_due(*, now: datetime | None = None) -> int:
    """Ends the operator's contracts (provider ``manual``) whose ``until`` has passed: status ``expired``, and
    when their plan has no seats left on the platform, its assignments are freed (the members pay with credits
    again). Each under its plan's seats lock, in its own transaction; safe beside itself. Stripe's subscriptions end
    by their own events and refresh. Returns how many contracts ended."""
    now = now or timezone.now()
    due = SeatSubscription.objects.filter(provider=SeatProvider.MANUAL, status__in=SEATED_STATUSES, ends_at__lte=now)
    ended = 0
    for subscription_id, platform_id, ai_plan_id in due.values_list("pk", "platform_id", "ai_plan_id"):
        with transaction.atomic(durable=True):
            locks.plan_seats_lock(platform_id=platform_id, ai_plan_id=ai_plan_id)
            if not due.filter(pk=subscription_id).update(status=SeatStatus.EXPIRED, updated_at=now):
                continue  # ended or renewed meanwhile
            ended += 1
            if selectors.seats_of(platform_id=platform_id, ai_plan_id=ai_plan_id).total == 0:
                assignments_clear(platform=Platform.objects.get(pk=platform_id),
                                  ai_plan=AIPlan.objects.get(pk=ai_plan_id))
    return ended


def seat_assign(*, platform: Platform, ai_plan: AIPlan, username: str, actor: AbstractBaseUser | None) -> SeatAssignment:
    """Gives the platform's member ``username`` a seat on ``ai_plan``: 404 ``member_not_found`` for a user who is
    not a member of the platform, 409 ``seat_already_assigned`` for a member who holds a seat on the platform
    (on any plan), 409 ``no_seat_available`` when every seat of the plan is taken."""
    user = _member(platform, username)
    with transaction.atomic(durable=True):
        locks.plan_seats_lock(platform_id=platform.pk, ai_plan_id=ai_plan.pk)
        if SeatAssignment.objects.filter(platform=platform, user=user).exists():
            raise SeatAlreadyAssigned(details={"username": username})
        seats = selectors.seats_of(platform_id=platform.pk, ai_plan_id=ai_plan.pk)
        if seats.unassigned < 1:
            raise NoSeatAvailable(details={"total": seats.total, "assigned": seats.assigned})
        external_funding_set(platform=platform, user=user, funded=True)  # the member's usage: the seat's first
        try:
            with transaction.atomic():  # another plan's assignment of the same member may commit meanwhile
                return SeatAssignment.objects.create(platform=platform, ai_plan=ai_plan, user=user, assigned_by=actor)
        except IntegrityError as exc:
            raise SeatAlreadyAssigned(details={"username": username}) from exc


def seat_unassign(*, platform: Platform, ai_plan: AIPlan, username: str) -> None:
    """Frees the seat of ``username`` on ``ai_plan`` (404 ``seat_not_assigned`` when they hold none there)."""
    user = _member(platform, username)
    with transaction.atomic(durable=True):
        locks.plan_seats_lock(platform_id=platform.pk, ai_plan_id=ai_plan.pk)
        if not SeatAssignment.objects.filter(platform=platform, ai_plan=ai_plan, user=user).exists():
            raise SeatNotAssigned(details={"username": username})
        _unseat(platform, ai_plan, [user])


def assignments_clear(*, platform: Platform, ai_plan: AIPlan) -> int:
    """Frees every seat of ``ai_plan`` on the platform: for a caller that found, under the plan's seats lock,
    that the plan has no seats left there (every subscription canceled or expired). Those members pay with
    credits again from the next request. Returns how many seats were freed."""
    users = list(get_user_model().objects.filter(
        seat_assignments__platform=platform, seat_assignments__ai_plan=ai_plan).order_by("pk"))
    _unseat(platform, ai_plan, users)
    return len(users)


def _unseat(platform: Platform, ai_plan: AIPlan, users: list[AbstractBaseUser]) -> None:
    """Deletes the assignments of ``users`` on the plan, each under its member's account lock (after the plan's
    seats lock, before the assignment: the usage path's order is the account, then the seat)."""
    for user in users:
        external_funding_set(platform=platform, user=user, funded=False)
        SeatAssignment.objects.filter(platform=platform, ai_plan=ai_plan, user=user).delete()


def _member(platform: Platform, username: str) -> AbstractBaseUser:
    user = get_user_model().objects.filter(username=username).first() if isinstance(username, str) else None
    if user is None or not Membership.objects.filter(platform=platform, user=user).exists():
        raise NotAPlatformMember(details={"username": username})
    return user
