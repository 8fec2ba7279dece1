"""A seat pays for its member's AI usage, within its budgets (``settings.CREDITS_USAGE_FUNDER``).

The credits app asks here, inside the transaction of the usage itself and under the member's credit account lock
(``credits.funding``): a usage event (single, batch, a hold's capture) or a hold of a member who holds a seat.
Under that lock no other request of the member runs, and seat assignments change only under it too
(``entitlements.services``), so the budgets read here cannot move before the charge commits: no race overshoots.

The rules, each stated once, here:
- **Tier**: a seat may call a model whose tier is at or below its plan's tier; a model's tier is its lowest tier
  in the operator's catalogue (``model_tiers``); a model outside it, or above the plan, is 403
  ``model_not_entitled``. A call without a model (a caller's amount) has no tier to check.
- **Windows**: the calendar week in the platform's time zone, and the 6-hour session opened by the first request
  after the previous one ended (``entitlements.windows``). They are the member's on the platform: a seat moved to
  another plan keeps the week's spending.
- **Budgets**: what a request would add to a window's spending and active reservations must fit in the plan's
  budget for both windows. What does not fit is refused (429 ``budget_exceeded``, naming the budget: weekly when
  the week cannot take it, else session) or, with the plan's overage ``credits``, paid with the member's credits
  (the seat pays up to its budget, exactly).
- **Holds**: a hold reserves on the windows open when it is made; its capture spends in those same windows (the
  reservation returns first), its release or expiry gives the reservation back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from django.db.models import F, Q

from billing_service.errors import DomainError
from billing_service.money import QUANTUM
from credits.funding import CAPTURE, RELEASE, RESERVE, SPEND, Funded, FundingRequest
from entitlements.errors import BudgetExceeded, ModelNotEntitled
from entitlements.models import (
    TIER_RANK,
    AIPlan,
    AIPlanModel,
    ChargeKind,
    Overage,
    SeatAssignment,
    SeatCharge,
    SeatWindow,
    WindowKind,
)
from entitlements.windows import session_bounds, week_bounds

_KINDS = {SPEND: ChargeKind.SPEND, RESERVE: ChargeKind.RESERVE, CAPTURE: ChargeKind.CAPTURE,
          RELEASE: ChargeKind.RELEASE}


@dataclass(slots=True)
class _Seat:
    platform_id: int
    user_id: int
    ai_plan: AIPlan
    time_zone: str


@dataclass(slots=True)
class _Charge:
    """What one accepted quote changes: ``spent`` and ``reserved`` of both windows."""

    ai_plan: AIPlan
    weekly: SeatWindow
    session: SeatWindow
    spent: Decimal
    reserved: Decimal


def model_tiers(models: set[str]) -> dict[str, str]:
    """Each catalogued model's tier: its lowest on the active AI plans that list it."""
    tiers: dict[str, str] = {}
    for model, tier in AIPlanModel.objects.filter(model__in=models, plan__is_active=True).values_list("model", "tier"):
        if model not in tiers or TIER_RANK[tier] < TIER_RANK[tiers[model]]:
            tiers[model] = tier
    return tiers


class SeatFunder:
    """``credits.funding.UsageFunder`` for members holding a seat."""

    def quote(self, requests: Sequence[FundingRequest], now: datetime) -> list[Funded | DomainError]:
        seats = _seats_of({r.account_id for r in requests})
        tiers = model_tiers({r.model for r in requests if r.model and r.kind in (SPEND, CAPTURE)})
        held = _hold_windows([r.hold_id for r in requests if r.kind in (CAPTURE, RELEASE)])
        windows: dict[tuple, tuple[SeatWindow, SeatWindow]] = {}
        answers: list[Funded | DomainError] = []
        for request in requests:
            seat = seats.get(request.account_id)
            try:
                answers.append(self._quote_one(request, seat, tiers, held, windows, now))
            except DomainError as exc:
                answers.append(exc)
        return answers

    def _quote_one(self, request: FundingRequest, seat: _Seat | None, tiers: dict[str, str], held: dict,
                   windows: dict, now: datetime) -> Funded:
        if request.kind in (CAPTURE, RELEASE):
            ai_plan, weekly, session = held[request.hold_id]
            ai_plan = seat.ai_plan if seat is not None else ai_plan  # today's budgets; none left: credits pay
        elif seat is None:  # the seat went before the mark did: the credits pay, as without one
            return Funded(request, Decimal(0), "")
        else:
            ai_plan = seat.ai_plan
            key = (seat.platform_id, seat.user_id)
            if key not in windows:
                windows[key] = _open_windows(seat, now)
            weekly, session = windows[key]
        if request.model and request.kind in (SPEND, CAPTURE) and seat is not None:
            _check_tier(request.model, ai_plan, tiers)
        spent, reserved = _fit(request, ai_plan, weekly, session, seat is not None, now)
        for window in (weekly, session):
            window.spent += spent
            window.reserved += reserved
        paid = reserved if request.kind == RESERVE else spent
        return Funded(request, paid, f"seat:{ai_plan.slug}" if paid else "",
                      state=_Charge(ai_plan, weekly, session, spent, reserved))

    def record(self, funded: Sequence[Funded], now: datetime) -> None:
        """Writes the accepted quotes: each window's new totals and one ``SeatCharge`` per change. The windows'
        totals are recomputed from the accepted quotes alone (a batch event refused for want of credits after its
        quote changes nothing)."""
        rows, touched = [], {}
        for answer in funded:
            charge: _Charge | None = answer.state
            if charge is None or (charge.spent == 0 and charge.reserved == 0):
                continue
            for window in (charge.weekly, charge.session):
                if id(window) not in touched:
                    touched[id(window)] = (window, window.committed_spent, window.committed_reserved)
                window.committed_spent += charge.spent
                window.committed_reserved += charge.reserved
            request = answer.request
            rows.append(SeatCharge(
                platform_id=charge.weekly.platform_id, user_id=charge.weekly.user_id, ai_plan=charge.ai_plan,
                kind=_KINDS[request.kind], weekly_window=charge.weekly, session_window=charge.session,
                spent_delta=charge.spent, reserved_delta=charge.reserved,
                weekly_budget=charge.ai_plan.weekly_budget, session_budget=charge.ai_plan.session_budget,
                weekly_spent_after=charge.weekly.committed_spent, session_spent_after=charge.session.committed_spent,
                usage_event_id=request.event_id, hold_id=request.hold_id, model=request.model, created_at=now,
            ))
        for window, spent_before, reserved_before in touched.values():
            window.spent, window.reserved = window.committed_spent, window.committed_reserved
            if window.pk is None:
                window.save(force_insert=True)
            else:
                SeatWindow.objects.filter(pk=window.pk).update(
                    spent=F("spent") + (window.spent - spent_before),
                    reserved=F("reserved") + (window.reserved - reserved_before), updated_at=now)
        for row in rows:
            row.weekly_window_id, row.session_window_id = row.weekly_window.pk, row.session_window.pk
        SeatCharge.objects.bulk_create(rows)


def _seats_of(account_ids: set) -> dict:
    """The seats of the members whose credit accounts these are: {account id: _Seat}."""
    assignments = (
        SeatAssignment.objects.filter(user__credit_accounts__id__in=account_ids,
                                      user__credit_accounts__platform_id=F("platform_id"))
        .select_related("ai_plan", "platform")
        .annotate(account_id=F("user__credit_accounts__id"))
    )
    return {a.account_id: _Seat(a.platform_id, a.user_id, a.ai_plan, a.platform.time_zone) for a in assignments}


def _hold_windows(hold_ids: list) -> dict:
    """For funded holds: the plan and the windows (locked) their reservation was made on."""
    if not hold_ids:
        return {}
    reserves = list(SeatCharge.objects.filter(hold_id__in=hold_ids, kind=ChargeKind.RESERVE)
                    .select_related("ai_plan").only("hold_id", "ai_plan", "weekly_window_id", "session_window_id"))
    locked = {w.pk: _tracked(w) for w in SeatWindow.objects.select_for_update().filter(
        pk__in=[pk for r in reserves for pk in (r.weekly_window_id, r.session_window_id)]).order_by("pk")}
    return {r.hold_id: (r.ai_plan, locked[r.weekly_window_id], locked[r.session_window_id]) for r in reserves}


def _open_windows(seat: _Seat, now: datetime) -> tuple[SeatWindow, SeatWindow]:
    """The member's current week and open session, locked; each created (in memory) when there is none yet."""
    week_start, week_end = week_bounds(now, seat.time_zone)
    current = Q(kind=WindowKind.WEEKLY, starts_at=week_start) | Q(kind=WindowKind.SESSION, starts_at__lte=now,
                                                                   ends_at__gt=now)
    found = {w.kind: w for w in SeatWindow.objects.select_for_update().filter(
        current, platform_id=seat.platform_id, user_id=seat.user_id).order_by("pk")}
    member = {"platform_id": seat.platform_id, "user_id": seat.user_id}
    weekly = found.get(WindowKind.WEEKLY) or SeatWindow(kind=WindowKind.WEEKLY, starts_at=week_start,
                                                         ends_at=week_end, **member)
    if WindowKind.SESSION in found:
        session = found[WindowKind.SESSION]
    else:
        start, end = session_bounds(now)
        session = SeatWindow(kind=WindowKind.SESSION, starts_at=start, ends_at=end, **member)
    return _tracked(weekly), _tracked(session)


def _tracked(window: SeatWindow) -> SeatWindow:
    window.spent = window.spent or Decimal(0)
    window.reserved = window.reserved or Decimal(0)
    window.committed_spent, window.committed_reserved = window.spent, window.reserved
    return window


def _check_tier(model: str, ai_plan: AIPlan, tiers: dict[str, str]) -> None:
    tier = tiers.get(model)
    if tier is None or TIER_RANK[tier] > TIER_RANK[ai_plan.tier]:
        raise ModelNotEntitled(details={"model": model, "model_tier": tier, "plan_tier": ai_plan.tier,
                                        "ai_plan": ai_plan.slug})


def _fit(request: FundingRequest, ai_plan: AIPlan, weekly: SeatWindow, session: SeatWindow, seated: bool,
         now: datetime) -> tuple[Decimal, Decimal]:
    """(spent, reserved) the request adds to both windows, or BudgetExceeded."""
    if request.kind == RELEASE or (request.kind == CAPTURE and not seated):
        return Decimal(0), -request.held
    weekly_left = ai_plan.weekly_budget - weekly.spent - weekly.reserved
    session_left = ai_plan.session_budget - session.spent - session.reserved
    returned = request.held if request.kind == CAPTURE else Decimal(0)  # the hold's own reservation
    fits = max(min(weekly_left, session_left) + returned, Decimal(0))
    if request.kind == RESERVE:
        fits = fits.quantize(QUANTUM, rounding=ROUND_FLOOR)  # a hold's amounts are whole quanta
    need = request.amount
    if need > fits:
        if ai_plan.overage != Overage.CREDITS:
            raise _exceeded(weekly_left + returned < need, weekly, session, max(fits, Decimal(0)), now)
        need = fits  # the seat pays up to its budget, the credits the rest
    if request.kind == RESERVE:
        return Decimal(0), need
    return need, -returned


def _exceeded(weekly_short: bool, weekly: SeatWindow, session: SeatWindow, remaining: Decimal,
              now: datetime) -> BudgetExceeded:
    window = weekly if weekly_short else session
    return BudgetExceeded(
        details={"budget": window.kind, "remaining": f"{remaining.normalize():f}",
                 "resets_at": window.ends_at.isoformat().replace("+00:00", "Z")},
        retry_after=max(math.ceil((window.ends_at - now).total_seconds()), 1),
    )
