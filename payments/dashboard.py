"""The admin's billing dashboard: what it reads, and its charts (inline SVG, drawn here).

It reads summaries, never the raw ledger or raw usage events, so it costs the same at a million ledger rows as at
a hundred: the ledger's daily rollups (``credits.LedgerDailyRollup``, kept by ``credits.services.rollups``), the
usage rollups (``credits.UsageRollup``), and the few rows that need an operator (failed webhook events, stalled
recharges). It lives in payments, the highest app it reads (credits, subscriptions, payments).

Per UTC day, from the rollups, each ledger row counted once (``split_day``):

- **sold**: credits of rows paid for (``payment_amount_usd`` set: top-up orders, auto-recharges, the plan credits
  of a paid subscription period), with **revenue** the USD paid;
- **granted**: credits added without a payment (check-ins, promotions, positive manual adjustments, plan credits
  of a free period, other grants);
- **returned**: usage debits given back (positive ``refund`` rows);
- **consumed**: usage debits (``subtract`` rows: direct usage and hold captures);
- **refunded**: credits taken back by payment refunds (negative ``refund`` rows);
- **expired**: plan credits removed at a period's end (``rollover``) and promotional credits past their date
  (``expiry``);
- **taken back**: negative manual adjustments and any other removal;
- **outstanding** at the end of a day: the running sum of every day's net change (sold + granted + returned -
  consumed - refunded - expired - taken back) since the first rollup: the credits held by accounts then. It equals
  the sum of the balances once the rollups are filled (``backfill_ledger_rollups``) and fresh (the beat refreshes
  today and yesterday every 5 minutes); the page shows the live sum of balances beside it.

Reserve and release rows move no balance and appear in no series."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from accounts.models import ADMIN_ROLES, Membership, Platform
from billing_service.db_router import lagging_reads
from credits.models import CreditAccount, LedgerDailyRollup, TransactionType, UsageRollup
from payments.models import WebhookEvent, WebhookStatus
from payments.recharge import RECONCILE_AFTER_SECONDS
from payments.recharge_models import IN_FLIGHT, Recharge, RechargeFailure, RechargeStatus
from subscriptions.models import CURRENT_STATUSES, Subscription

DAYS = 30
TOP_ACCOUNTS = 10
LATEST = 10
# A recharge in flight this long has been missed by the upkeep that settles it (a pending one is charged again
# after a minute, a processing one read back from Stripe after RECONCILE_AFTER_SECONDS): someone should look.
STALLED_AFTER = timedelta(seconds=RECONCILE_AFTER_SECONDS) + timedelta(minutes=30)
# A recharge given up (sent too often, each time a provider error) this recently needs a look too.
GAVE_UP_WITHIN = timedelta(days=7)
ZERO = Decimal(0)


def clock() -> datetime:
    """The dashboard's now (tests set another)."""
    return timezone.now()


SERIES = ["sold", "granted", "returned", "consumed", "refunded", "expired", "taken_back"]
_INFLOWS = ("sold", "granted", "returned")
_EXPIRING = (TransactionType.EXPIRY, TransactionType.ROLLOVER)


# --- which rows need an operator (also the admin's list filters) -------------------------------------------------


def recharges_stalled_q(*, now: datetime | None = None) -> Q:
    """Recharges still in flight (pending or processing) untouched for ``STALLED_AFTER``."""
    return Q(status__in=IN_FLIGHT, updated_at__lt=(now or timezone.now()) - STALLED_AFTER)


def recharges_needing_attention_q(*, now: datetime | None = None) -> Q:
    """Stalled recharges, and the ones given up within ``GAVE_UP_WITHIN``."""
    now = now or timezone.now()
    gave_up = Q(status=RechargeStatus.FAILED, failure_reason=RechargeFailure.GAVE_UP,
                created_at__gte=now - GAVE_UP_WITHIN)
    return recharges_stalled_q(now=now) | gave_up


WEBHOOKS_NEEDING_ATTENTION = (WebhookStatus.FAILED, WebhookStatus.PARKED)


# --- platforms a user may see ------------------------------------------------------------------------------------


def dashboard_platforms(*, user: AbstractBaseUser) -> list[Platform]:
    """Every platform for a superuser; for other staff, the platforms they own or administer."""
    platforms = Platform.objects.order_by("platform_key")
    if not user.is_superuser:
        platforms = platforms.filter(
            pk__in=Membership.objects.filter(user_id=user.pk, role__in=ADMIN_ROLES).values("platform_id")
        )
    return list(platforms.only("pk", "platform_key", "name"))


# --- the figures -------------------------------------------------------------------------------------------------


@dataclass
class Day:
    day: date
    sold: Decimal = ZERO
    revenue_usd: Decimal = ZERO
    granted: Decimal = ZERO
    returned: Decimal = ZERO
    consumed: Decimal = ZERO
    refunded: Decimal = ZERO
    expired: Decimal = ZERO
    taken_back: Decimal = ZERO
    outstanding: Decimal = ZERO

    @property
    def net(self) -> Decimal:
        return sum((getattr(self, name) for name in _INFLOWS), ZERO) - sum(
            (getattr(self, name) for name in SERIES if name not in _INFLOWS), ZERO)


@dataclass
class Dashboard:
    platforms: list[Platform]  # the ones summed (all a superuser sees, or the one chosen)
    days: list[Day]
    totals: Day
    live_balance: Decimal
    refreshed_at: datetime | None
    subscriptions_by_plan: list[dict]
    webhooks_by_status: dict[str, int]
    webhooks_latest: list[WebhookEvent]
    recharges_stalled: int
    recharges_attention: int
    recharges_latest: list[Recharge]
    top_accounts: list[dict]
    charts: dict[str, SafeString] = field(default_factory=dict)


def split_day(day: Day, transaction_type: str, *, credits_in: Decimal, credits_out: Decimal,
              credits_in_paid: Decimal, payment_usd: Decimal) -> None:
    """Adds one rollup bucket to the day's series (the definitions in the module docstring)."""
    day.sold += credits_in_paid
    day.revenue_usd += payment_usd
    unpaid_in = credits_in - credits_in_paid
    if transaction_type == TransactionType.REFUND:
        day.returned += unpaid_in
        day.refunded += credits_out
        return
    day.granted += unpaid_in
    if transaction_type == TransactionType.SUBTRACT:
        day.consumed += credits_out
    elif transaction_type in _EXPIRING:
        day.expired += credits_out
    else:
        day.taken_back += credits_out


def ledger_days(*, platform_ids: list[int], first: date, last: date) -> tuple[list[Day], Decimal, datetime | None]:
    """The days ``first``..``last`` with their series and outstanding credits, from the rollups: two queries (the
    window's buckets by day and type; the net of every earlier day). Also the latest refresh."""
    rollups = LedgerDailyRollup.objects.filter(platform_id__in=platform_ids)
    window = (
        rollups.filter(day__gte=first, day__lte=last)
        .values("day", "transaction_type")
        .annotate(credits_in=Sum("credits_in"), credits_out=Sum("credits_out"),
                  credits_in_paid=Sum("credits_in_paid"), payment_usd=Sum("payment_usd"),
                  refreshed_at=Max("refreshed_at"))
        .order_by()
    )
    before = rollups.filter(day__lt=first).aggregate(net_in=Sum("credits_in"), net_out=Sum("credits_out"))
    days = {first + timedelta(days=i): Day(day=first + timedelta(days=i)) for i in range((last - first).days + 1)}
    refreshed_at = None
    for bucket in window:
        split_day(days[bucket["day"]], bucket["transaction_type"], credits_in=bucket["credits_in"],
                  credits_out=bucket["credits_out"], credits_in_paid=bucket["credits_in_paid"],
                  payment_usd=bucket["payment_usd"])
        refreshed_at = max(refreshed_at or bucket["refreshed_at"], bucket["refreshed_at"])
    outstanding = (before["net_in"] or ZERO) - (before["net_out"] or ZERO)
    ordered = [days[d] for d in sorted(days)]
    for day in ordered:
        outstanding += day.net
        day.outstanding = outstanding
    return ordered, outstanding, refreshed_at


@lagging_reads  # summaries: may lag (README, "Read replicas"); who may see them is read before, from the primary
def dashboard_get(
    *, platforms: list[Platform], now: datetime | None = None, days: int = DAYS, provider_events: bool = False
) -> Dashboard:
    """Everything the dashboard shows for ``platforms`` over the last ``days`` UTC days (today included)."""
    now = now or clock()
    last = now.astimezone(UTC).date()
    first = last - timedelta(days=days - 1)
    ids = [p.pk for p in platforms]
    series, _, refreshed_at = ledger_days(platform_ids=ids, first=first, last=last)
    totals = Day(day=last)
    for day in series:
        for name in (*SERIES, "revenue_usd"):
            setattr(totals, name, getattr(totals, name) + getattr(day, name))
    totals.outstanding = series[-1].outstanding if series else ZERO

    live_balance = CreditAccount.objects.filter(platform_id__in=ids).aggregate(total=Sum("balance"))["total"] or ZERO
    subscriptions = list(
        Subscription.objects.filter(status__in=CURRENT_STATUSES, account__platform_id__in=ids)
        .values("plan_id", "plan__slug", "plan__name", "account__platform__platform_key")
        .annotate(active=Count("pk", filter=Q(status="active")), trialing=Count("pk", filter=Q(status="trialing")),
                  past_due=Count("pk", filter=Q(status="past_due")), total=Count("pk"))
        .order_by("-total", "plan__slug")
    )
    # Provider events belong to no platform (one webhook endpoint per provider): operators only.
    events = WebhookEvent.objects.filter(status__in=WEBHOOKS_NEEDING_ATTENTION) if provider_events else \
        WebhookEvent.objects.none()
    webhooks = dict(events.values_list("status").annotate(n=Count("pk")).order_by())
    webhooks_latest = list(
        events.only("pk", "event_id", "provider", "type", "status", "attempts", "last_error", "received_at")
        .order_by("-received_at")[:LATEST]
    )
    recharges = Recharge.objects.filter(account__platform_id__in=ids)
    counts = recharges.aggregate(
        stalled=Count("pk", filter=recharges_stalled_q(now=now)),
        attention=Count("pk", filter=recharges_needing_attention_q(now=now)),
    )
    recharges_latest = list(
        recharges.filter(recharges_needing_attention_q(now=now))
        .select_related("account__user", "account__platform").order_by("-created_at")[:LATEST]
    )
    top_accounts = list(
        UsageRollup.objects.filter(account__platform_id__in=ids, day__gte=first, day__lte=last)
        .values("account_id", "account__user__username", "account__platform__platform_key")
        .annotate(consumed=Sum("credits_consumed"), requests=Sum("total_requests"))
        .order_by("-consumed", "account_id")[:TOP_ACCOUNTS]
    )
    dashboard = Dashboard(
        platforms=platforms, days=series, totals=totals, live_balance=live_balance, refreshed_at=refreshed_at,
        subscriptions_by_plan=subscriptions, webhooks_by_status=webhooks, webhooks_latest=webhooks_latest,
        recharges_stalled=counts["stalled"], recharges_attention=counts["attention"],
        recharges_latest=recharges_latest, top_accounts=top_accounts,
    )
    dashboard.charts = {
        "flows": line_chart(series, [("sold", "#1f77b4"), ("granted", "#2ca02c"), ("consumed", "#d62728"),
                                     ("refunded", "#9467bd"), ("expired", "#8c564b")],
                            title="Credits sold, granted, consumed, refunded and expired per day (UTC)"),
        "outstanding": line_chart(series, [("outstanding", "#ff7f0e")],
                                  title="Credits outstanding at the end of each day"),
    }
    return dashboard


# --- the charts: inline SVG, drawn on the server ------------------------------------------------------------------

_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 760, 240, 70, 10, 24, 36
_STEP = Decimal("0.1")


def _coordinate(value: Decimal) -> str:
    return str(value.quantize(_STEP))


def _nice_ceiling(value: Decimal) -> Decimal:
    """The smallest 1, 2 or 5 x 10^n at least ``value`` (the top of the axis)."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for mantissa in (1, 2, 5, 10):
        top = Decimal(mantissa).scaleb(exponent)
        if top >= value:
            return top
    return Decimal(10).scaleb(exponent)  # pragma: no cover


def line_chart(days: list[Day], series: list[tuple[str, str]], *, title: str) -> SafeString:
    """A line per series over the days, with a 0 baseline, the axis top and the first and last day as labels.
    Values are exact decimals; only the drawing coordinates are rounded (to a tenth of a pixel)."""
    if not days:
        return mark_safe("")
    top = _nice_ceiling(max((getattr(d, name) for d in days for name, _ in series), default=ZERO))
    width, height = Decimal(_W - _LEFT - _RIGHT), Decimal(_H - _TOP - _BOTTOM)
    step = width / max(len(days) - 1, 1)

    def point(i: int, value: Decimal) -> str:
        x = Decimal(_LEFT) + step * i
        y = Decimal(_TOP) + height - height * max(value, ZERO) / top
        return f"{_coordinate(x)},{_coordinate(y)}"

    lines = format_html_join(
        "", '<polyline fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}</title></polyline>',
        ((colour, " ".join(point(i, getattr(d, name)) for i, d in enumerate(days)), name.replace("_", " "))
         for name, colour in series),
    )
    legend = format_html_join(
        "", '<tspan fill="{}" dx="12">&#9632; {}</tspan>',
        ((colour, name.replace("_", " ")) for name, colour in series),
    )
    baseline = _TOP + _H - _TOP - _BOTTOM
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="billing-chart" role="img" viewBox="0 0 {w} {h}" '
        'width="100%" style="max-width:{w}px"><title>{title}</title>'
        '<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="#999"/>'
        '<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#999"/>'
        '<text x="{label_x}" y="{top_text}" text-anchor="end" font-size="11">{top_value}</text>'
        '<text x="{label_x}" y="{base}" text-anchor="end" font-size="11">0</text>'
        '<text x="{left}" y="{date_y}" font-size="11">{first}</text>'
        '<text x="{right}" y="{date_y}" text-anchor="end" font-size="11">{last}</text>'
        '{lines}<text x="{left}" y="14" font-size="12">{legend}</text></svg>',
        w=_W, h=_H, title=title, left=_LEFT, right=_W - _RIGHT, top=_TOP, base=baseline, label_x=_LEFT - 6,
        top_text=_TOP + 4, top_value=f"{top:,f}", date_y=_H - 12, first=days[0].day.isoformat(),
        last=days[-1].day.isoformat(), lines=lines, legend=legend,
    )
