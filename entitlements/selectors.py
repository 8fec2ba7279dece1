"""Reads of the entitlements app: the AI plans a platform is offered, and its seats on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Max, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import Platform
from billing_service.inputs import uuid_or_none
from billing_service.local_time import local_date, local_midnight
from credits.models import CreditAccount, ModelPrice
from entitlements import funding
from entitlements.models import (
    SEATED_STATUSES,
    TIER_RANK,
    AIPlan,
    AIPlanModel,
    SeatAssignment,
    SeatCharge,
    SeatSubscription,
    model_tier,
)
from entitlements.windows import week_bounds


def ai_plans_offered(*, platform: Platform) -> QuerySet[AIPlan]:
    """The active AI plans offered to the platform: those offered to every platform (no platform chosen) and those
    offered to it."""
    return AIPlan.objects.filter(Q(platforms__isnull=True) | Q(platforms=platform), is_active=True).distinct()


def ai_plan_get(*, platform: Platform, ref: str) -> AIPlan | None:
    """The AI plan that ``ref`` names (its id or its slug) among those offered to the platform and those it holds
    seats or assignments on (a plan retired, or no longer offered to it, keeps its seats there: they can still be
    seen and freed; buying more is refused by the checkout)."""
    held = Q(subscriptions__platform=platform) | Q(assignments__platform=platform)
    plans = AIPlan.objects.filter(
        Q(pk__in=ai_plans_offered(platform=platform).values("pk")) | Q(pk__in=AIPlan.objects.filter(held).values("pk")))
    plan_id = uuid_or_none(ref)
    return (plans.filter(pk=plan_id) if plan_id is not None else plans.filter(slug=ref)).first()


def ai_plan_find(*, ref: str) -> AIPlan | None:
    """Any AI plan of the catalogue (active or not, offered to any platform) that ``ref`` names: its id or its
    slug. For operators, who keep the catalogue."""
    plan_id = uuid_or_none(ref)
    plans = AIPlan.objects.all()
    return (plans.filter(pk=plan_id) if plan_id is not None else plans.filter(slug=ref)).first()


def models_on_rate_card(*, models: list[str]) -> set[str]:
    """The names of ``models`` that some platform's rate card prices (a ``credits.ModelPrice`` of that name)."""
    return set(ModelPrice.objects.filter(model__in=models).values_list("model", flat=True).order_by().distinct())


def catalogue_model_tiers(*, models: list[str], exclude_plan_id: object = None) -> dict[str, list[tuple[str, str]]]:
    """The tiers ``models`` have in the active plans of the catalogue (but ``exclude_plan_id``), each with the
    slug of the plan that gives it: ``{model: [(tier, plan slug), ...]}``, by plan slug."""
    rows = AIPlanModel.objects.filter(model__in=models, plan__is_active=True)
    if exclude_plan_id is not None:
        rows = rows.exclude(plan_id=exclude_plan_id)
    found: dict[str, list[tuple[str, str]]] = {}
    for model, tier, slug in rows.values_list("model", "tier", "plan__slug").order_by("model", "plan__slug"):
        found.setdefault(model, []).append((tier, slug))
    return found


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
    """The budgets of the seats of ``user_ids`` on ``ai_plan`` now, as the usage path reads them
    (``funding.seats_read``: the windows that have not ended; two queries whatever the number of users). A week
    not begun yet renews at the end of the current calendar week; a session not open yet has no reset time."""
    now = now or timezone.now()
    accounts = dict(CreditAccount.objects.filter(platform=platform, user_id__in=user_ids).values_list("id", "user_id"))
    seats, _ = funding.seats_read(sorted(accounts), [], now)
    windows = {accounts[account_id]: (seat.weekly, seat.session) for account_id, seat in seats.items()}
    empty = Budget(Decimal(0), Decimal(0), Decimal(0), None)
    usage = {}
    for user_id in user_ids:
        if user_id not in windows:  # no seat (any more)
            usage[user_id] = SeatUsage(weekly=empty, session=empty)
            continue
        week, session = windows[user_id]
        usage[user_id] = SeatUsage(
            weekly=Budget(ai_plan.weekly_budget, week.spent, week.reserved, week.ends_at),
            session=Budget(ai_plan.session_budget, session.spent, session.reserved,
                           session.ends_at if session.opened else None),
        )
    return usage


# --- the platform's entitlements, a seat's models ---------------------------------------------------------------


def seats_by_plan(*, platform_id: int, ai_plan_ids: list) -> dict[object, Seats]:
    """``seats_of`` for several plans at once (two queries whatever their number): each plan id of
    ``ai_plan_ids`` with its seats on the platform."""
    totals = dict(
        SeatSubscription.objects.filter(platform_id=platform_id, ai_plan_id__in=ai_plan_ids,
                                        status__in=SEATED_STATUSES)
        .values_list("ai_plan_id").annotate(total=Sum("quantity")).order_by()
    )
    assigned = dict(
        SeatAssignment.objects.filter(platform_id=platform_id, ai_plan_id__in=ai_plan_ids)
        .values_list("ai_plan_id").annotate(assigned=Count("id")).order_by()
    )
    return {plan_id: Seats(total=totals.get(plan_id) or 0, assigned=assigned.get(plan_id, 0))
            for plan_id in ai_plan_ids}


def month_start(now: datetime, time_zone: str) -> datetime:
    """The 1st of the month holding ``now`` in ``time_zone``, 00:00 local, in UTC."""
    return local_midnight(local_date(now, time_zone).replace(day=1), time_zone)


@dataclass(frozen=True, slots=True)
class SeatSpending:
    weekly: Decimal  # since Monday 00:00 in the platform's time zone
    monthly: Decimal  # since the 1st of the month 00:00 in the platform's time zone


def seat_spending_of(*, platform: Platform, now: datetime | None = None) -> SeatSpending:
    """What the platform's seats spent (the ``spent_delta`` of its seat charges) this week and this month, in one
    query."""
    now = now or timezone.now()
    week_start, _ = week_bounds(now, platform.time_zone)
    first = month_start(now, platform.time_zone)
    sums = SeatCharge.objects.filter(platform=platform, created_at__gte=min(week_start, first)).aggregate(
        weekly=Sum("spent_delta", filter=Q(created_at__gte=week_start)),
        monthly=Sum("spent_delta", filter=Q(created_at__gte=first)),
    )
    return SeatSpending(weekly=sums["weekly"] or Decimal(0), monthly=sums["monthly"] or Decimal(0))


def seats_last_synced(*, platform_id: int) -> datetime | None:
    """When a provider last confirmed one of the platform's seat subscriptions (None: never)."""
    return SeatSubscription.objects.filter(platform_id=platform_id).aggregate(last=Max("synced_at"))["last"]


def seat_of(*, platform: Platform, user_id: int) -> SeatAssignment | None:
    """The member's seat on the platform (at most one), with its plan."""
    return SeatAssignment.objects.filter(platform=platform, user_id=user_id).select_related("ai_plan").first()


def seat_assignments_of(*, platform: Platform, ai_plan: AIPlan) -> QuerySet[SeatAssignment]:
    """The seats of ``ai_plan`` on the platform, oldest first, with their holders and who assigned them."""
    return (SeatAssignment.objects.filter(platform=platform, ai_plan=ai_plan)
            .select_related("user", "assigned_by").order_by("assigned_at", "id"))


@dataclass(frozen=True, slots=True)
class EntitledModel:
    model: str  # the model's name on the rate card
    display_name: str  # never empty: the model's name when the catalogue gives none
    tier: str


def entitled_models(*, platform: Platform, ai_plan: AIPlan) -> list[EntitledModel]:
    """The models a seat of ``ai_plan`` may call, as the usage path decides it (``entitlements.funding``): the
    catalogue's models (the ``AIPlanModel`` rows of its active plans) whose tier (``model_tier``) is at or below
    the plan's, once per model name (the first display name given), by name. One query."""
    rows = (
        AIPlanModel.objects.filter(plan__is_active=True)
        .values_list("model", "display_name", "tier").order_by("model", "plan__slug")
    )
    tiers: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for model, display_name, tier in rows:
        tiers.setdefault(model, []).append(tier)
        if display_name and model not in names:
            names[model] = display_name
    rank = TIER_RANK[ai_plan.tier]
    return [EntitledModel(model=model, display_name=names.get(model, model), tier=tier)
            for model, tier in ((m, model_tier(t)) for m, t in tiers.items()) if TIER_RANK[tier] <= rank]
