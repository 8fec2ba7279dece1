"""Reads of accounts and the ledger. Listing an account's ledger costs the same for 10 rows or 10 million:
counts come from the account's counters and sequence numbers, pages are sequence ranges."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import DateField, F, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth, TruncYear

from accounts.models import Platform
from billing_service.db import Compiled, server_bound_cursor
from billing_service.money import EXACT_CONTEXT
from credits import sql
from credits.models import (
    CreditAccount,
    Hold,
    LedgerEntry,
    LedgerKey,
    ModelPrice,
    TransactionType,
    UsageEvent,
    UsageRollup,
)


class LedgerDirection:
    """Which way a row moved the balance: ``credit`` raised it, ``debit`` lowered it, ``either`` is every row but
    the holds' (``reserve`` and ``release`` move credits between available and reserved, not the balance): counted
    from the account's counters, at constant cost."""

    CREDIT, DEBIT, EITHER = "credit", "debit", "either"
    CHOICES = (CREDIT, DEBIT, EITHER)
    HOLD_TYPES = (TransactionType.RESERVE, TransactionType.RELEASE)
    CONDITIONS = {CREDIT: Q(balance_delta__gt=0), DEBIT: Q(balance_delta__lt=0),
                  EITHER: ~Q(transaction_type__in=HOLD_TYPES)}


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    transaction_type: str | None = None
    from_date: date | None = None
    to_date: date | None = None
    direction: str | None = None  # LedgerDirection
    exclude_type: str | None = None
    created_from: datetime | None = None  # inclusive instants
    created_to: datetime | None = None

    @property
    def has_dates(self) -> bool:
        return any(bound is not None for bound in (self.from_date, self.to_date, self.created_from, self.created_to))

    def start(self) -> datetime | None:
        """The first instant included, or None."""
        bounds = [b for b in (self.from_date and _day_start(self.from_date), self.created_from) if b is not None]
        return max(bounds) if bounds else None

    def end(self) -> datetime | None:
        """The first instant after the range, or None."""
        after_to = None
        if self.created_to is not None and self.created_to.replace(tzinfo=None) < datetime.max:
            after_to = self.created_to + timedelta(microseconds=1)
        bounds = [b for b in (self.to_date and day_end(self.to_date), after_to) if b is not None]
        return min(bounds) if bounds else None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_end(day: date) -> datetime | None:
    """The first instant after ``day`` (UTC); None when there is none (the last representable day)."""
    return None if day == date.max else _day_start(day + timedelta(days=1))


def account_get(*, account_id: uuid.UUID | str, platform: Platform) -> CreditAccount | None:
    return CreditAccount.objects.filter(pk=account_id, platform=platform).select_related("user").first()


def account_for(*, platform: Platform, user: AbstractBaseUser | None) -> CreditAccount | None:
    """The member's account, or with ``user=None`` the platform's own."""
    return CreditAccount.objects.filter(platform=platform, user=user).first()


# --- one account's ledger --------------------------------------------------------------------------------


def ledger_entry_by_key(*, account_id: uuid.UUID | str, key: str) -> LedgerEntry | None:
    """The ledger row an idempotency key posted for an account, found through the key table (``LedgerKey``), which
    knows the row's month: the row is read from that month's partition alone, not looked for in every month."""
    found = LedgerKey.objects.filter(account_id=account_id, idempotency_key=key).values_list("entry_id", "created_at")
    row = found.first()
    return None if row is None else LedgerEntry.objects.filter(pk=row[0], created_at=row[1]).first()


def _sequence_bounds(account: CreditAccount, flt: LedgerFilter) -> tuple[int, int]:
    """The sequence range [lo, hi] that the date filter selects (created_at never decreases along
    the sequence, so each bound is one index probe)."""
    lo, hi = 1, account.last_sequence
    rows = LedgerEntry.objects.filter(account=account)
    start, end = flt.start(), flt.end()
    if start is not None:
        first = (
            rows.filter(created_at__gte=start)
            .order_by("created_at", "sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        lo = first if first is not None else hi + 1
    if end is not None:
        last = (
            rows.filter(created_at__lt=end)
            .order_by("-created_at", "-sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        hi = last if last is not None else 0
    return lo, hi


def _filtered(account: CreditAccount, flt: LedgerFilter, lo: int, hi: int) -> QuerySet[LedgerEntry]:
    rows = LedgerEntry.objects.filter(account=account)
    if flt.transaction_type:
        rows = rows.filter(transaction_type=flt.transaction_type)
    if flt.direction:
        rows = rows.filter(LedgerDirection.CONDITIONS[flt.direction])
    if flt.exclude_type:
        rows = rows.exclude(transaction_type=flt.exclude_type)
    if flt.has_dates:
        rows = rows.filter(sequence__gte=lo, sequence__lte=hi)
    return rows


def ledger_count(*, account: CreditAccount, flt: LedgerFilter) -> int:
    return _count(account, flt, *_sequence_bounds(account, flt))


def _count(account: CreditAccount, flt: LedgerFilter, lo: int, hi: int) -> int:
    if hi < lo:
        return 0
    if flt.direction == LedgerDirection.EITHER and not (flt.transaction_type or flt.exclude_type or flt.has_dates):
        return hi - lo + 1 - sum(account.count_of(kind) for kind in LedgerDirection.HOLD_TYPES)
    if flt.direction or flt.exclude_type:
        return _filtered(account, flt, lo, hi).count()
    if not flt.transaction_type:
        return hi - lo + 1
    if not flt.has_dates:
        return account.count_of(flt.transaction_type)
    return _filtered(account, flt, lo, hi).count()


def ledger_slice(
    *, account: CreditAccount, flt: LedgerFilter, offset: int, limit: int
) -> tuple[int, list[LedgerEntry]]:
    """(count, rows): up to ``limit`` rows after the newest ``offset``, newest first."""
    page_size = limit
    lo, hi = _sequence_bounds(account, flt)
    if hi < lo:
        return 0, []
    if not flt.transaction_type and not flt.direction and not flt.exclude_type:
        # Every sequence number in [lo, hi] is a row: the page is a sequence range.
        top = hi - offset
        rows = (
            LedgerEntry.objects.filter(account=account, sequence__lte=top, sequence__gt=max(lo - 1, top - page_size))
            .order_by("-sequence")
            if top >= lo
            else LedgerEntry.objects.none()
        )
        return hi - lo + 1, list(rows)
    count = _count(account, flt, lo, hi)
    rows = _filtered(account, flt, lo, hi).order_by("-sequence")[offset : offset + page_size]
    return count, list(rows)


def ledger_keyset(
    *, account: CreditAccount, flt: LedgerFilter, before: int | None, after: int | None, limit: int
) -> tuple[list[LedgerEntry], bool]:
    """Up to ``limit`` rows newest first, strictly older than sequence ``before`` (or newer than ``after``);
    and whether more rows lie beyond them in that direction."""
    lo, hi = _sequence_bounds(account, flt)
    rows = _filtered(account, flt, lo, hi)
    if after is not None:
        found = list(rows.filter(sequence__gt=after).order_by("sequence")[: limit + 1])
        more = len(found) > limit
        return list(reversed(found[:limit])), more
    if before is not None:
        rows = rows.filter(sequence__lt=before)
    found = list(rows.order_by("-sequence")[: limit + 1])
    return found[:limit], len(found) > limit


# --- a platform's ledger ---------------------------------------------------------------------------------


def platform_ledger_list(*, platform: Platform) -> QuerySet[LedgerEntry]:
    return (
        LedgerEntry.objects.filter(platform=platform)
        .select_related("account__user", "actor")
        .order_by("-created_at", "-id")
    )


# --- rate card -------------------------------------------------------------------------------------------


def model_prices_for(*, platform_id: int, models: list[str]) -> dict[str, list[ModelPrice]]:
    """Every price version of the given models, newest ``effective_from`` first, by model."""
    versions: dict[str, list[ModelPrice]] = {model: [] for model in models}
    for price in ModelPrice.objects.filter(platform_id=platform_id, model__in=models).order_by(
        "model", "-effective_from"
    ):
        versions[price.model].append(price)
    return versions


# The single-event usage path reads these on every request: stated with the ORM, compiled once, run prepared
# (``billing_service.db.Compiled``), so that the one-statement path runs no ORM query and compiles nothing per request.
_PRICE_FIELDS = [f.attname for f in ModelPrice._meta.concrete_fields]
_ANY_PLATFORM, _ANY_MODEL = -1, "\x00model"
_ANY_ACCOUNT, _ANY_REQUEST = uuid.UUID(int=1), "\x00request"
_PRICE_VERSIONS = Compiled(
    ModelPrice.objects.filter(platform_id=_ANY_PLATFORM, model=_ANY_MODEL)
    .order_by("-effective_from")
    .values_list(*_PRICE_FIELDS),
    {"platform_id": _ANY_PLATFORM, "model": _ANY_MODEL},
)
_CARRIED_REMAINDER = Compiled(
    CreditAccount.objects.filter(pk=_ANY_ACCOUNT, platform_id=_ANY_PLATFORM).order_by().values_list("carried_remainder"),
    {"account_id": _ANY_ACCOUNT, "platform_id": _ANY_PLATFORM},
)


def model_price_versions(*, platform_id: int, model: str) -> list[ModelPrice]:
    """Every price version of one model, newest first."""
    with server_bound_cursor() as cursor:
        rows = _PRICE_VERSIONS.fetch(cursor, platform_id=platform_id, model=model)
    return [ModelPrice.from_db("default", _PRICE_FIELDS, row) for row in rows]


def account_carried_remainder(*, account_id: uuid.UUID, platform_id: int) -> Decimal | None:
    """The usage cost an account of the platform carries (read without a lock: the one-statement usage path
    writes only if it is unchanged); None when the platform has no such account."""
    with server_bound_cursor() as cursor:
        rows = _CARRIED_REMAINDER.fetch(cursor, account_id=account_id, platform_id=platform_id)
    return rows[0][0] if rows else None


def usage_call_get(*, account_id: uuid.UUID, request_id: str) -> tuple[uuid.UUID | None, UsageEvent | None]:
    """What an AI call's request_id already names in an account: (its hold's id, its recorded event with the
    event's ledger row), each None when there is none."""
    with server_bound_cursor() as cursor:  # one prepared round trip (the batch's look-up), usually finding nothing
        cursor.execute(sql.FIND_CALLS, [[account_id], [request_id]], prepare=True)
        found = cursor.fetchall()
    for is_hold, _, _, _, row_id, _ in found:
        if is_hold:
            return row_id, None
    if not found:
        return None, None
    return None, UsageEvent.objects.select_related("ledger_entry").get(pk=found[0][4])


def model_price_at(*, platform_id: int, model: str, at: datetime) -> ModelPrice | None:
    """The version of ``model``'s price in effect at ``at``."""
    return (
        ModelPrice.objects.filter(platform_id=platform_id, model=model, effective_from__lte=at)
        .order_by("-effective_from")
        .first()
    )


# --- rate card listing -----------------------------------------------------------------------------------



class PriceStatus:
    CURRENT = "current"  # the version in effect now
    SCHEDULED = "scheduled"  # takes effect later
    SUPERSEDED = "superseded"  # replaced by a later version that is in effect


@dataclass(frozen=True, slots=True)
class PriceVersion:
    price: ModelPrice
    effective_until: datetime | None  # when the next version takes over; None for the newest
    status: str


@dataclass(frozen=True, slots=True)
class RateCardModel:
    model: str
    current: PriceVersion | None  # None until the model's first version takes effect
    versions: list[PriceVersion]  # newest effective_from first


def rate_card_model_names(*, platform_id: int, model: str | None = None) -> QuerySet:
    """The distinct model names on a platform's rate card, alphabetically (``model``: only that one)."""
    rows = ModelPrice.objects.filter(platform_id=platform_id)
    if model is not None:
        rows = rows.filter(model=model)
    return rows.order_by("model").values_list("model", flat=True).distinct()


def rate_card_models(*, platform_id: int, models: list[str], at: datetime) -> list[RateCardModel]:
    """Each model's versions, with the one in effect at ``at``, in the order of ``models``; models without
    any version are left out."""
    by_model: dict[str, list[ModelPrice]] = {model: [] for model in models}
    prices = (
        ModelPrice.objects.filter(platform_id=platform_id, model__in=models)
        .select_related("created_by")
        .order_by("model", "-effective_from")
    )
    for price in prices:
        by_model[price.model].append(price)
    found = []
    for model, prices_of_model in by_model.items():
        if not prices_of_model:
            continue
        versions, current, until = [], None, None
        for price in prices_of_model:  # newest first
            if price.effective_from > at:
                status = PriceStatus.SCHEDULED
            elif current is None:
                status = PriceStatus.CURRENT
            else:
                status = PriceStatus.SUPERSEDED
            version = PriceVersion(price=price, effective_until=until, status=status)
            if status == PriceStatus.CURRENT:
                current = version
            versions.append(version)
            until = price.effective_from
        found.append(RateCardModel(model=model, current=current, versions=versions))
    return found


# --- usage statistics (from the daily rollups only) --------------------------------------------------------


class UsagePeriod:
    DAILY = "daily"
    MONTHLY = "monthly"
    YEARLY = "yearly"
    CHOICES = (DAILY, MONTHLY, YEARLY)


def usage_bucket_start(day: date, period: str) -> date:
    if period == UsagePeriod.DAILY:
        return day
    if period == UsagePeriod.MONTHLY:
        return day.replace(day=1)
    return date(day.year, 1, 1)


def usage_bucket_next(start: date, period: str) -> date:
    """The first day of the bucket after the one starting on ``start``."""
    if period == UsagePeriod.DAILY:
        return start + timedelta(days=1)
    if period == UsagePeriod.MONTHLY:
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return date(start.year + 1, 1, 1)


def usage_bucket_count(*, period: str, first_day: date, last_day: date) -> int:
    """How many daily, monthly or yearly buckets the days ``first_day``..``last_day`` touch."""
    if last_day < first_day:
        return 0
    if period == UsagePeriod.DAILY:
        return (last_day - first_day).days + 1
    if period == UsagePeriod.MONTHLY:
        return (last_day.year - first_day.year) * 12 + last_day.month - first_day.month + 1
    return last_day.year - first_day.year + 1


@dataclass(kw_only=True, slots=True)
class UsageFigures:
    total_requests: int = 0
    successful_requests: int = 0
    failed_requests: int = 0
    credits_consumed: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    requests_by_endpoint: dict[str, int] | None = None

    def add(self, row: dict) -> None:
        self.total_requests += row["total"]
        self.successful_requests += row["successful"]
        self.failed_requests += row["failed"]
        self.credits_consumed = EXACT_CONTEXT.add(self.credits_consumed, row["credits"])
        self.input_tokens += row["tokens_in"]
        self.output_tokens += row["tokens_out"]
        by_endpoint = self.requests_by_endpoint
        by_endpoint[row["endpoint"]] = by_endpoint.get(row["endpoint"], 0) + row["total"]

    def __post_init__(self) -> None:
        if self.requests_by_endpoint is None:
            self.requests_by_endpoint = {}

    def sort_endpoints(self) -> None:
        """Busiest endpoint first, then by name."""
        by_endpoint = self.requests_by_endpoint.items()
        self.requests_by_endpoint = dict(sorted(by_endpoint, key=lambda kv: (-kv[1], kv[0])))


@dataclass(kw_only=True, slots=True)
class UsageBucket(UsageFigures):
    period_start: datetime  # the bucket's natural UTC bounds: [period_start, period_end)
    period_end: datetime


@dataclass(kw_only=True, slots=True)
class UsageStats(UsageFigures):
    account: CreditAccount
    period: str
    period_start: datetime  # the requested range, as given
    period_end: datetime
    first_day: date  # the UTC days counted: first_day..last_day
    last_day: date
    buckets: list[UsageBucket]


def _utc_day(moment: date | datetime) -> date:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).date()
    return moment


def _as_instant(moment: date | datetime) -> datetime:
    return moment if isinstance(moment, datetime) else _day_start(moment)


def usage_stats(
    *, account: CreditAccount, period: str, start: date | datetime, end: date | datetime
) -> UsageStats:
    """Usage of ``account`` from ``start`` to ``end`` (inclusive), in daily, monthly or yearly buckets.

    Reads only ``UsageRollup`` (one row per account, UTC day and endpoint, found through its unique index),
    grouped by bucket and endpoint in the database: the cost follows days x endpoints, never the number of
    events. Rollups are per UTC day, so ``start`` and ``end`` count at day granularity: every UTC day from the
    one holding ``start`` to the one holding ``end`` is counted whole. Buckets carry their natural bounds
    (a month from its first day), every bucket the range touches is present (zeros where nothing happened),
    and the first and last ones may lie only partly inside the range.
    """
    if period not in UsagePeriod.CHOICES:
        raise ValueError(f"period must be one of {UsagePeriod.CHOICES}, got {period!r}")
    first_day, last_day = _utc_day(start), _utc_day(end)
    if last_day < first_day:
        raise ValueError("end is before start")
    stats = UsageStats(
        account=account, period=period, period_start=_as_instant(start), period_end=_as_instant(end),
        first_day=first_day, last_day=last_day, buckets=[],
    )
    buckets: dict[date, UsageBucket] = {}
    day = usage_bucket_start(first_day, period)
    while day <= last_day:
        following = usage_bucket_next(day, period)
        buckets[day] = UsageBucket(period_start=_day_start(day), period_end=_day_start(following))
        day = following

    bucket_of = {
        UsagePeriod.DAILY: F("day"),
        UsagePeriod.MONTHLY: TruncMonth("day", output_field=DateField()),
        UsagePeriod.YEARLY: TruncYear("day", output_field=DateField()),
    }[period]
    rows = (
        UsageRollup.objects.filter(account_id=account.pk, day__gte=first_day, day__lte=last_day)
        .annotate(bucket=bucket_of)
        .values("bucket", "endpoint")
        .annotate(
            total=Sum("total_requests"),
            successful=Sum("successful_requests"),
            failed=Sum("failed_requests"),
            credits=Sum("credits_consumed"),
            tokens_in=Sum("input_tokens"),
            tokens_out=Sum("output_tokens"),
        )
        .order_by()
    )
    for row in rows:
        buckets[row["bucket"]].add(row)
        stats.add(row)
    stats.buckets = list(buckets.values())
    stats.sort_endpoints()
    for bucket in stats.buckets:
        bucket.sort_endpoints()
    return stats


def usage_total_requests(*, account: CreditAccount) -> int:
    """Every request the account ever made, from its rollups (one row per day and endpoint used)."""
    total = UsageRollup.objects.filter(account_id=account.pk).aggregate(total=Sum("total_requests"))["total"]
    return total or 0


# --- holds (reservations) --------------------------------------------------------------------------------


def hold_list(
    *, platform: Platform, account_id: uuid.UUID | str | None = None, status: str | None = None
) -> QuerySet[Hold]:
    """The holds of every account of ``platform``, newest first (``created_at``, then ``id``)."""
    rows = Hold.objects.filter(account__platform=platform)
    if account_id is not None:
        rows = rows.filter(account_id=account_id)
    if status is not None:
        rows = rows.filter(status=status)
    return rows.order_by("-created_at", "-id")


def hold_get(*, platform: Platform, hold_id: uuid.UUID | str) -> Hold | None:
    """One hold of an account of ``platform``; None when there is none (or it is another platform's)."""
    return Hold.objects.filter(pk=hold_id, account__platform=platform).first()
