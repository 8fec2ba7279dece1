"""Reads of the entitlements app: the AI plans a platform is offered, and its seats on them."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet, Sum

from accounts.models import Platform
from billing_service.inputs import uuid_or_none
from entitlements.models import SEATED_STATUSES, AIPlan, SeatAssignment, SeatSubscription


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
