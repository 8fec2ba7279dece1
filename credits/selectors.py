"""Reads of accounts and the ledger. Listing an account's ledger costs the same for 10 rows or 10 million:
counts come from the account's counters and sequence numbers, pages are sequence ranges."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet, Sum

from accounts.models import Platform
from credits.models import CreditAccount, Hold, HoldStatus, LedgerEntry, ModelPrice, TransactionType


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    transaction_type: str | None = None
    from_date: date | None = None
    to_date: date | None = None

    @property
    def has_dates(self) -> bool:
        return self.from_date is not None or self.to_date is not None


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


def _sequence_bounds(account: CreditAccount, flt: LedgerFilter) -> tuple[int, int]:
    """The sequence range [lo, hi] that the date filter selects (created_at never decreases along
    the sequence, so each bound is one index probe)."""
    lo, hi = 1, account.last_sequence
    rows = LedgerEntry.objects.filter(account=account)
    if flt.from_date is not None:
        first = (
            rows.filter(created_at__gte=_day_start(flt.from_date))
            .order_by("created_at", "sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        lo = first if first is not None else hi + 1
    if flt.to_date is not None and day_end(flt.to_date) is not None:
        last = (
            rows.filter(created_at__lt=day_end(flt.to_date))
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
    if flt.has_dates:
        rows = rows.filter(sequence__gte=lo, sequence__lte=hi)
    return rows


def ledger_count(*, account: CreditAccount, flt: LedgerFilter) -> int:
    lo, hi = _sequence_bounds(account, flt)
    if hi < lo:
        return 0
    if not flt.transaction_type:
        return hi - lo + 1
    if not flt.has_dates:
        return account.count_of(flt.transaction_type)
    return _filtered(account, flt, lo, hi).count()


def ledger_page(
    *, account: CreditAccount, flt: LedgerFilter, page: int, page_size: int
) -> tuple[int, list[LedgerEntry]]:
    """(count, rows) of page ``page`` (1-based), newest first."""
    lo, hi = _sequence_bounds(account, flt)
    if hi < lo:
        return 0, []
    offset = (page - 1) * page_size
    if not flt.transaction_type:
        # Every sequence number in [lo, hi] is a row: the page is a sequence range.
        top = hi - offset
        rows = (
            LedgerEntry.objects.filter(account=account, sequence__lte=top, sequence__gt=max(lo - 1, top - page_size))
            .order_by("-sequence")
            if top >= lo
            else LedgerEntry.objects.none()
        )
        return hi - lo + 1, list(rows)
    count = ledger_count(account=account, flt=flt)
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


def platform_ledger_keyset(
    *,
    rows: QuerySet[LedgerEntry],
    direction: str | None,
    position: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> tuple[list[LedgerEntry], bool]:
    """Up to ``limit`` rows of ``rows`` (ordered newest first) past ``position`` in ``direction``
    ("before": older, "after": newer), newest first; and whether more lie beyond them."""
    if direction == "before" and position:
        at, entry_id = position
        rows = rows.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=entry_id))
    elif direction == "after" and position:
        at, entry_id = position
        rows = rows.filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=entry_id)).order_by("created_at", "id")
    found = list(rows[: limit + 1])
    more = len(found) > limit
    found = found[:limit]
    if direction == "after":
        found.reverse()
    return found, more


# --- invariants ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    account_id: uuid.UUID
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def ledger_verify(*, account: CreditAccount) -> LedgerCheck:
    """Checks every ledger invariant of one account against its rows (reads them all)."""
    account.refresh_from_db()
    problems: list[str] = []
    balance = reserved = Decimal(0)
    expected_sequence = 1
    last_created = None
    counts: dict[str, int] = {}
    for entry in LedgerEntry.objects.filter(account=account).order_by("sequence").iterator(chunk_size=5000):
        if entry.sequence != expected_sequence:
            problems.append(f"sequence gap: expected {expected_sequence}, found {entry.sequence}")
            expected_sequence = entry.sequence
        balance += entry.balance_delta
        reserved += entry.reserved_delta
        if entry.balance_after != balance or entry.reserved_after != reserved:
            problems.append(f"row {entry.sequence}: running totals {balance}/{reserved} != stored "
                            f"{entry.balance_after}/{entry.reserved_after}")
        if balance - reserved < 0:
            problems.append(f"row {entry.sequence}: available below zero")
        if last_created is not None and entry.created_at < last_created:
            problems.append(f"row {entry.sequence}: created_at goes back in time")
        last_created = entry.created_at
        counts[entry.transaction_type] = counts.get(entry.transaction_type, 0) + 1
        expected_sequence += 1
    if account.balance != balance:
        problems.append(f"balance {account.balance} != sum of balance effects {balance}")
    if account.reserved != reserved:
        problems.append(f"reserved {account.reserved} != sum of reserved effects {reserved}")
    active = Hold.objects.filter(account=account, status=HoldStatus.ACTIVE).aggregate(t=Sum("amount"))["t"]
    if account.reserved != (active or Decimal(0)):
        problems.append(f"reserved {account.reserved} != active holds {active or 0}")
    if account.last_sequence != expected_sequence - 1:
        problems.append(f"last_sequence {account.last_sequence} != rows {expected_sequence - 1}")
    for transaction_type in TransactionType.values:
        n = counts.get(transaction_type, 0)
        if account.count_of(transaction_type) != n:
            problems.append(f"count_{transaction_type} {account.count_of(transaction_type)} != rows {n}")
    return LedgerCheck(account_id=account.id, problems=problems)


# --- rate card -------------------------------------------------------------------------------------------


def model_prices_for(*, platform_id: int, models: list[str]) -> dict[str, list[ModelPrice]]:
    """Every price version of the given models, newest ``effective_from`` first, by model."""
    versions: dict[str, list[ModelPrice]] = {model: [] for model in models}
    for price in ModelPrice.objects.filter(platform_id=platform_id, model__in=models).order_by(
        "model", "-effective_from"
    ):
        versions[price.model].append(price)
    return versions


def model_price_at(*, platform_id: int, model: str, at: datetime) -> ModelPrice | None:
    """The version of ``model``'s price in effect at ``at``."""
    return (
        ModelPrice.objects.filter(platform_id=platform_id, model=model, effective_from__lte=at)
        .order_by("-effective_from")
        .first()
    )
