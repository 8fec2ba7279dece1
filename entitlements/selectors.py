"""Reads of the entitlements app: the AI plans a platform is offered, and its seats on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import Platform
from billing_service.inputs import uuid_or_none
from entitlements.models import SEATED_STATUSES, AIPlan, SeatAssignment, SeatSubscription, SeatWindow, WindowKind
from entitlements.windows import week_bounds


def ai_plans_offered(*, platform: Platform) -> QuerySet[AIPlan]:
    """The active AI plans offered to the platform: those offered to every platform (no platform chosen) and those
    offered to it."""
    return AIPlan.objects.filter(Q(platforms__isnull=True) | Q(platforms=platform), is_active=True).distinct()


def ai_plan_get(*, platform: Platform, ref: str) -> AIPlan | None:
    """The AI plan offered to the platform that ``ref`` names: its id or its slug."""
    plans = ai_plans_offered(platform=platform)
    plan_id = uuid_or_none(ref)
    return (plans.filter(pk=plan_id) if plan_id is not None else plans.filter(slug=ref)).first()


@dataclass(frozen=True, slots=True)
class Seats:
    total: int  # the quantities of the plan's current subscriptions on the platform
    assigned: int

    @property
    def unassigned(self) -> int:
        return max(self.total - self.assigned, 0)

    @property
    def over_assigned(self) -> int:
        """Assignments beyond the seats (a quantity lowered below them): kept, new ones refused."""
        return max(self.assigned - self.total, 0)


def seats_of(*, platform_id: int, ai_plan_id: object) -> Seats:
    total = SeatSubscription.objects.filter(
        platform_id=platform_id, ai_plan_id=ai_plan_id, status__in=SEATED_STATUSES
    ).aggregate(total=Sum("quantity"))["total"] or 0
    assigned = SeatAssignment.objects.filter(platform_id=platform_id, ai_plan_id=ai_plan_id).count()
    return Seats(total=total, assigned=assigned)


# --- budgets ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget of a seat now: spent (usage), reserved (active holds), remaining, and when it renews."""

    budget: Decimal
    used: Decimal
    reserved: Decimal
    resets_at: datetime | None  # None: a session not open yet (the next request opens one)

    @property
    def remaining(self) -> Decimal:
        return max(self.budget - self.used - self.reserved, Decimal(0))


@dataclass(frozen=True, slots=True)
class SeatUsage:
    weekly: Budget
    session: Budget


def seat_usage_of(
    *, platform: Platform, ai_plan: AIPlan, user_ids: list[int], now: datetime | None = None
) -> dict[int, SeatUsage]:
    """The budgets of the seats of ``user_ids`` on ``ai_plan`` now (two queries whatever the number of users):
    the current week's window and the open session's, where they exist."""
    now = now or timezone.now()
    week_start, week_end = week_bounds(now, platform.time_zone)
    weekly = {
        w.user_id: w for w in SeatWindow.objects.filter(
            platform=platform, user_id__in=user_ids, kind=WindowKind.WEEKLY, starts_at=week_start)
    }
    sessions = {
        w.user_id: w for w in SeatWindow.objects.filter(
            platform=platform, user_id__in=user_ids, kind=WindowKind.SESSION, starts_at__lte=now, ends_at__gt=now)
    }
    usage = {}
    for user_id in user_ids:
        week, session = weekly.get(user_id), sessions.get(user_id)
        usage[user_id] = SeatUsage(
            weekly=Budget(ai_plan.weekly_budget, week.spent if week else Decimal(0),
                          week.reserved if week else Decimal(0), week_end),
            session=Budget(ai_plan.session_budget, session.spent if session else Decimal(0),
                           session.reserved if session else Decimal(0), session.ends_at if session else None),
        )
    return usage
