"""A seat pays for its member's AI usage, within its budgets (``settings.CREDITS_USAGE_FUNDER``).

The credits app asks here, inside the transaction of the usage itself and under the member's credit account lock
(``credits.funding``): a usage event (single, batch, a hold's capture) or a hold of a member who holds a seat.
Under that lock no other request of the member runs, and seat assignments change only under it too
(``entitlements.services``), so the budgets read here cannot move before the charge commits: no race overshoots.

The rules, each stated once, here:
- **Tier**: a seat may call a model whose tier is at or below its plan's tier; a model's tier is its lowest tier
  in the operator's catalogue (``model_tier``); a model outside it, or above the plan, is 403
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
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from functools import partial

from django.db import transaction

from accounts import outbound
from accounts.outbound_models import OutboundEventType
from billing_service.db import server_bound_cursor
from billing_service.errors import DomainError
from billing_service.money import QUANTUM
from credits.funding import CAPTURE, RELEASE, RESERVE, SPEND, Funded, FundingRequest
from entitlements import sql
from entitlements.errors import BudgetExceeded, ModelNotEntitled
from entitlements.models import TIER_RANK, ChargeKind, Overage, SeatCharge, SeatWindow, WindowKind, model_tier
from entitlements.windows import session_bounds, week_bounds

_KINDS = {SPEND: ChargeKind.SPEND, RESERVE: ChargeKind.RESERVE, CAPTURE: ChargeKind.CAPTURE,
          RELEASE: ChargeKind.RELEASE}


@dataclass(frozen=True, slots=True)
class _Plan:
    id: uuid.UUID
    slug: str
    tier: str
    weekly_budget: Decimal
    session_budget: Decimal
    overage: str


@dataclass(slots=True)
class _Window:
    """A window of a member as read (or to be opened): ``spent``/``reserved`` run with the quotes,
    ``committed_*`` with the accepted ones (``record``)."""

    platform_id: int
    user_id: int
    kind: str
    starts_at: datetime
    ends_at: datetime
    spent: Decimal
    reserved: Decimal
    opened: bool = True  # False: not open yet (the request would open it)
    committed_spent: Decimal = Decimal(0)
    committed_reserved: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        self.committed_spent, self.committed_reserved = self.spent, self.reserved


@dataclass(slots=True)
class _Seat:
    plan: _Plan
    weekly: _Window
    session: _Window


@dataclass(slots=True)
class _Charge:
    """What one accepted quote changes: ``spent`` and ``reserved`` of both windows."""

    plan: _Plan
    weekly: _Window
    session: _Window
    spent: Decimal
    reserved: Decimal


class SeatFunder:
    """``credits.funding.UsageFunder`` for members holding a seat."""

    def quote(self, requests: Sequence[FundingRequest], now: datetime) -> list[Funded | DomainError]:
        settles = [r.hold_id for r in requests if r.kind in (CAPTURE, RELEASE)]
        seats, tiers = seats_read(sorted({r.account_id for r in requests}), sorted({r.model for r in requests if r.model}),
                                  now)
        held = _hold_windows(settles) if settles else {}
        answers: list[Funded | DomainError] = []
        for request in requests:
            try:
                answers.append(_quote_one(request, seats.get(request.account_id), tiers, held, now))
            except DomainError as exc:
                answers.append(exc)
        return answers

    def record(self, funded: Sequence[Funded], now: datetime) -> None:
        """Writes the accepted quotes in one statement (``sql.CHARGES_WRITE``): each window's new spending and
        reservations (a new window opened), one ``SeatCharge`` per change. The windows' totals come from
        the accepted quotes alone (a batch event refused for want of credits after its quote changes nothing)."""
        charges, windows = [], {}
        for answer in funded:
            charge: _Charge | None = answer.state
            if charge is None or (charge.spent == 0 and charge.reserved == 0):
                continue
            for window in (charge.weekly, charge.session):
                windows[(window.platform_id, window.user_id, window.kind, window.starts_at)] = window
                window.committed_spent += charge.spent
                window.committed_reserved += charge.reserved
            request, plan = answer.request, charge.plan
            charges.append((
                uuid.uuid4(), charge.weekly.platform_id, charge.weekly.user_id, plan.id, _KINDS[request.kind],
                charge.spent, charge.reserved, plan.weekly_budget, plan.session_budget, charge.weekly.committed_spent,
                charge.session.committed_spent, request.event_id, request.hold_id, request.model, now,
                charge.weekly.starts_at, charge.session.starts_at,
            ))
        if not charges:
            return
        rows = list(windows.values())
        for window in rows:
            window.spent, window.reserved = window.committed_spent, window.committed_reserved
        with server_bound_cursor() as cursor:
            cursor.execute(sql.CHARGES_WRITE, [
                [w.platform_id for w in rows], [w.user_id for w in rows], [w.kind for w in rows],
                [w.starts_at for w in rows], [w.ends_at for w in rows], [w.spent for w in rows],
                [w.reserved for w in rows], now, *(list(column) for column in zip(*charges, strict=True)),
            ], prepare=True)


def _quote_one(request: FundingRequest, seat: _Seat | None, tiers: dict[str, list[str]], held: dict,
               now: datetime) -> Funded:
    if request.kind in (CAPTURE, RELEASE):
        plan, weekly, session = held[request.hold_id]
        plan = seat.plan if seat is not None else plan  # today's budgets; no seat left: the credits pay
    elif seat is None:  # the seat went before the mark did: the credits pay, as without one
        return Funded(request, Decimal(0), "")
    else:
        plan, weekly, session = seat.plan, seat.weekly, seat.session
    if request.model and request.kind in (SPEND, CAPTURE) and seat is not None:
        tier = model_tier(tiers.get(request.model, []))
        if tier is None or TIER_RANK[tier] > TIER_RANK[plan.tier]:
            raise ModelNotEntitled(details={"model": request.model, "model_tier": tier, "plan_tier": plan.tier,
                                            "ai_plan": plan.slug})
    spent, reserved = _fit(request, plan, weekly, session, seat is not None, now)
    for window in (weekly, session):
        window.spent += spent
        window.reserved += reserved
    paid = reserved if request.kind == RESERVE else spent
    return Funded(request, paid, f"seat:{plan.slug}" if paid else "",
                  state=_Charge(plan, weekly, session, spent, reserved))


def seats_read(account_ids: list, models: list[str], now: datetime) -> tuple[dict, dict[str, list[str]]]:
    """One round trip (``sql.SEATS_READ``): {account id: _Seat} for the members of these credit accounts who hold
    a seat, with their windows at ``now``, and the catalogue's tiers of ``models``. A member's window is their
    latest of its kind while it has not ended, even one that starts after ``now`` (a request whose clock was read
    before it waited for the account lock joins the window the request before it opened, never opens a second one
    beside it). Without one, the window a request would open now (``opened`` false): the session from ``now``; the
    calendar week holding ``now``, but never from before the previous week window's end (a platform whose time zone
    moved west would otherwise start a week that overlaps the last one, with a budget of its own). On the usage
    path the member's credit account lock, held by the caller, keeps them as read; ``selectors.seat_usage_of``
    shows them."""
    with server_bound_cursor() as cursor:
        cursor.execute(sql.SEATS_READ, {"now": now, "models": models, "accounts": account_ids}, prepare=True)
        rows = cursor.fetchall()
    seats, tiers = {}, {}
    for row in rows:
        account_id, platform_id, user_id, *plan_row, time_zone = row[:10]
        weekly_row, session_row, catalogue = row[10:14], row[14:18], row[18]
        member = (platform_id, user_id)
        if weekly_row[1] is None or weekly_row[1] <= now:
            start, end = week_bounds(now, time_zone)
            weekly_row = (max(start, weekly_row[1] or start), end, Decimal(0), Decimal(0), False)
        if session_row[1] is None or session_row[1] <= now:
            session_row = (*session_bounds(now), Decimal(0), Decimal(0), False)
        seats[account_id] = _Seat(_Plan(*plan_row), _Window(*member, WindowKind.WEEKLY, *weekly_row),
                                  _Window(*member, WindowKind.SESSION, *session_row))
        for entry in catalogue or []:
            model, tier = entry.rsplit(" ", 1)
            tiers.setdefault(model, []).append(tier)
    return seats, tiers


def _hold_windows(hold_ids: list) -> dict:
    """For funded holds being settled: the plan and the windows their reservation was made on."""
    reserves = list(SeatCharge.objects.filter(hold_id__in=hold_ids, kind=ChargeKind.RESERVE).select_related(
        "ai_plan", "weekly_window", "session_window"))

    def window(w: SeatWindow) -> _Window:
        return _Window(w.platform_id, w.user_id, w.kind, w.starts_at, w.ends_at, w.spent, w.reserved)

    return {
        r.hold_id: (_Plan(r.ai_plan.pk, r.ai_plan.slug, r.ai_plan.tier, r.ai_plan.weekly_budget,
                          r.ai_plan.session_budget, r.ai_plan.overage),
                    window(r.weekly_window), window(r.session_window))
        for r in reserves
    }


def _fit(request: FundingRequest, ai_plan: _Plan, weekly: _Window, session: _Window, seated: bool,
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
            exceeded = _exceeded(weekly_left + returned < need, weekly, session, max(fits, Decimal(0)), now)
            exceeded.followups.append(partial(_budget_exceeded_event, request, ai_plan,
                                              weekly if weekly_left + returned < need else session, exceeded))
            raise exceeded
        need = fits  # the seat pays up to its budget, the credits the rest
    if request.kind == RESERVE:
        return Decimal(0), need
    return need, -returned


def _budget_exceeded_event(request: FundingRequest, ai_plan: _Plan, window: _Window, exceeded: BudgetExceeded) -> None:
    """The platform hears that a seat's budget refused usage: once per member, budget and window (``_window_key``;
    the refused request rolled back: this runs after it, in a transaction of its own)."""
    with transaction.atomic():
        outbound.event_record(
            platform_id=window.platform_id, type=OutboundEventType.BUDGET_EXCEEDED, account_id=request.account_id,
            data={"user_id": window.user_id, "ai_plan": ai_plan.slug, "budget": window.kind,
                  "window_start": window.starts_at, "resets_at": window.ends_at,
                  "remaining": exceeded.details.get("remaining"), "model": request.model or None},
            dedupe_key=f"budget.exceeded:{window.platform_id}:{window.user_id}:{window.kind}:{_window_key(window)}",
        )


def _window_key(window: _Window) -> str:
    """The window a refusal is told once for: its start; for a window the refused request would have opened (a
    session starting now), the session-long stretch of time it falls in."""
    if window.opened:
        return window.starts_at.isoformat()
    length = (window.ends_at - window.starts_at).total_seconds()
    return f"unopened:{int(window.starts_at.timestamp() // length)}"


def _exceeded(weekly_short: bool, weekly: _Window, session: _Window, remaining: Decimal,
              now: datetime) -> BudgetExceeded:
    window = weekly if weekly_short else session
    return BudgetExceeded(
        details={"budget": window.kind, "remaining": f"{remaining.normalize():f}",
                 "resets_at": window.ends_at.isoformat().replace("+00:00", "Z")},
        retry_after=max(math.ceil((window.ends_at - now).total_seconds()), 1),
    )
