"""The ledger's daily rollups (``LedgerDailyRollup``): what the admin dashboard reads instead of the ledger.

A refresh recomputes whole UTC days from the ledger, one ``GROUP BY`` per run over the days' rows (found through
the ``(platform, -created_at)`` index: every platform's range), and upserts one row per (platform, day,
transaction type) (``INSERT ... ON CONFLICT DO UPDATE``). Running it again gives the same rows; the ledger is
append-only, so a day's buckets only ever grow and a recomputation never has to remove one. The beat runs it for
today and yesterday (``credits.tasks.ledger_rollups_refresh_task``, every 5 minutes: yesterday is recomputed once
more after midnight for the rows of its last minutes); ``manage.py backfill_ledger_rollups`` fills every day since
the first ledger row. Two refreshes at once are harmless: each writes a complete day as one of them saw it, and
the next run writes it as it is."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, DecimalField, F, Min, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.models import Platform
from credits.models import LedgerDailyRollup, LedgerEntry

BACKFILL_CHUNK_DAYS = 31
_ROLLUP_FIELDS = ["entries", "credits_in", "credits_out", "credits_in_paid", "payment_usd", "refreshed_at"]


def _zero() -> Coalesce:
    return Value(Decimal(0), output_field=DecimalField(max_digits=20, decimal_places=6))


def _sum(expression, condition: Q | None = None) -> Coalesce:  # noqa: ANN001
    return Coalesce(Sum(expression, filter=condition), _zero())


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """The instants [start of ``first``, start of the day after ``last``) in UTC."""
    return datetime.combine(first, time(0), tzinfo=UTC), datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)


@transaction.atomic(durable=True)
def ledger_rollups_refresh_range(*, first: date, last: date) -> int:
    """Recomputes the rollups of the UTC days ``first`` to ``last`` (included) from the ledger and upserts them;
    returns how many (platform, day, type) buckets it wrote."""
    if last < first:
        raise ValueError(f"last ({last}) is before first ({first})")
    start, end = day_bounds(first, last)
    platform_ids = list(Platform.objects.order_by("pk").values_list("pk", flat=True))
    buckets = (
        LedgerEntry.objects.filter(platform_id__in=platform_ids, created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("platform_id", "day", "transaction_type")
        .annotate(
            entries=Count("pk"),
            credits_in=_sum("balance_delta", Q(balance_delta__gt=0)),
            credits_out=_sum(-F("balance_delta"), Q(balance_delta__lt=0)),
            credits_in_paid=_sum("balance_delta", Q(balance_delta__gt=0, payment_amount_usd__isnull=False)),
            payment_usd=_sum("payment_amount_usd"),
        )
        .order_by()
    )
    now = timezone.now()
    rows = [LedgerDailyRollup(refreshed_at=now, **bucket) for bucket in buckets]
    if rows:
        LedgerDailyRollup.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["platform", "day", "transaction_type"],
            update_fields=_ROLLUP_FIELDS,
        )
    return len(rows)


def ledger_rollups_refresh(*, days: int = 2, now: datetime | None = None) -> int:
    """Recomputes the last ``days`` UTC days (1: today; 2: today and yesterday) of every platform; returns the
    buckets written."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    today = (now or timezone.now()).astimezone(UTC).date()
    return ledger_rollups_refresh_range(first=today - timedelta(days=days - 1), last=today)


def ledger_rollups_backfill(*, since: date | None = None, until: date | None = None,
                            chunk_days: int = BACKFILL_CHUNK_DAYS) -> int:
    """Recomputes every day from ``since`` (default: the first ledger row's day) to ``until`` (default: today),
    ``chunk_days`` days per transaction; returns the buckets written."""
    if since is None:
        first_at = LedgerEntry.objects.aggregate(first=Min("created_at"))["first"]
        if first_at is None:
            return 0
        since = first_at.astimezone(UTC).date()
    until = until or timezone.now().astimezone(UTC).date()
    written, day = 0, since
    while day <= until:
        last = min(day + timedelta(days=chunk_days - 1), until)
        written += ledger_rollups_refresh_range(first=day, last=last)
        day = last + timedelta(days=1)
    return written
