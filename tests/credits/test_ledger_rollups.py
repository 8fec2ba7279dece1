"""The ledger's daily rollups (``credits.services.rollups``): equal to a direct aggregation of the ledger, the same
on a second run, and cut at UTC midnight."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from credits.errors import InsufficientCredits
from credits.models import LedgerDailyRollup, LedgerEntry, TransactionType
from credits.services import (
    credits_adjust,
    credits_debit,
    credits_grant,
    credits_refund,
    ledger_rollups_backfill,
    ledger_rollups_refresh,
)
from credits.tasks import ledger_rollups_refresh_task
from tests.conftest import LedgerClock, make_member, make_platform

pytestmark = pytest.mark.django_db

FIELDS = ("entries", "credits_in", "credits_out", "credits_in_paid", "payment_usd")


def direct_aggregation() -> dict[tuple[int, date, str], tuple]:
    """The rollups as computed here, in Python, from every ledger row."""
    sums: dict[tuple[int, date, str], list] = defaultdict(lambda: [0, Decimal(0), Decimal(0), Decimal(0), Decimal(0)])
    for row in LedgerEntry.objects.all():
        bucket = sums[(row.platform_id, row.created_at.astimezone(UTC).date(), row.transaction_type)]
        bucket[0] += 1
        if row.balance_delta > 0:
            bucket[1] += row.balance_delta
            if row.payment_amount_usd is not None:
                bucket[3] += row.balance_delta
        else:
            bucket[2] -= row.balance_delta
        bucket[4] += row.payment_amount_usd or 0
    return {key: tuple(value) for key, value in sums.items()}


def rollups() -> dict[tuple[int, date, str], tuple]:
    return {(r.platform_id, r.day, r.transaction_type): tuple(getattr(r, f) for f in FIELDS)
            for r in LedgerDailyRollup.objects.all()}


def at(moment: datetime, *members) -> None:  # noqa: ANN002
    """The next rows of the members' accounts carry ``moment`` (later than the real clock: see LedgerClock)."""
    LedgerClock(moment=moment).pin(*(m.account for m in members))


@pytest.fixture
def future_day() -> date:
    return datetime.now(UTC).date() + timedelta(days=3)


def random_ledger(seed: int, first_day: date, days: int) -> datetime:
    """Random rows of every kind on two platforms over ``days`` UTC days, some at either side of midnight; returns
    the last moment used."""
    rng = random.Random(seed)
    members = [make_member(make_platform(f"p{seed}a"), f"u{seed}a"), make_member(make_platform(f"p{seed}b"), f"u{seed}b"),
               make_member(make_platform(f"p{seed}c"), f"u{seed}c")]
    members.append(make_member(members[0].platform, f"u{seed}d"))
    moments = sorted(
        datetime.combine(first_day + timedelta(days=rng.randrange(days)), time(0), tzinfo=UTC)
        + rng.choice([timedelta(0), timedelta(days=1) - timedelta(microseconds=1),
                      timedelta(seconds=rng.randrange(86_400))])
        for _ in range(80)
    )
    for moment in moments:
        member = rng.choice(members)
        at(moment, member)
        amount = Decimal(rng.randrange(1, 5000)) / 100
        kind = rng.choice(["paid", "grant", "debit", "debit", "adjust+", "adjust-", "refund"])
        try:
            if kind == "paid":
                credits_grant(account_id=member.account.pk, amount=amount, payment_amount_usd=amount / 2,
                              description="top-up")
            elif kind == "grant":
                credits_grant(account_id=member.account.pk, amount=amount, description="gift")
            elif kind == "debit":
                credits_debit(account_id=member.account.pk, amount=amount, description="usage")
            elif kind == "adjust+":
                credits_adjust(account_id=member.account.pk, amount=amount, description="fix", actor=None)
            elif kind == "adjust-":
                credits_adjust(account_id=member.account.pk, amount=-amount, description="fix", actor=None)
            else:
                credits_refund(account_id=member.account.pk, amount=amount, description="returned")
        except InsufficientCredits:  # a removal beyond the balance: nothing written, go on
            continue
    return moments[-1]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_a_direct_aggregation_of_the_ledger(seed, future_day):
    last = random_ledger(seed, future_day, days=4)
    ledger_rollups_refresh(days=(last.date() - future_day).days + 1, now=last)
    expected = direct_aggregation()
    assert len(expected) > 5
    assert rollups() == expected


def test_a_second_run_writes_the_same_rows(future_day):
    last = random_ledger(7, future_day, days=3)
    first_written = ledger_rollups_refresh(days=4, now=last)
    before = rollups()
    second_written = ledger_rollups_refresh(days=4, now=last)
    assert first_written == second_written == len(before) == LedgerDailyRollup.objects.count()
    assert rollups() == before == direct_aggregation()


def test_a_refresh_picks_up_rows_added_since_the_last_one(platform, future_day):
    member = make_member(platform, "rolly")
    at(datetime.combine(future_day, time(10), tzinfo=UTC), member)
    credits_grant(account_id=member.account.pk, amount=Decimal("10"), payment_amount_usd=Decimal("9.99"))
    ledger_rollups_refresh(days=1, now=datetime.combine(future_day, time(11), tzinfo=UTC))
    credits_grant(account_id=member.account.pk, amount=Decimal("5"), payment_amount_usd=Decimal("4.99"))
    ledger_rollups_refresh(days=1, now=datetime.combine(future_day, time(11), tzinfo=UTC))
    row = LedgerDailyRollup.objects.get(platform=platform, day=future_day, transaction_type=TransactionType.ADD)
    assert (row.entries, row.credits_in, row.credits_in_paid, row.payment_usd) == (
        2, Decimal("15"), Decimal("15"), Decimal("14.98"))


def test_days_are_cut_at_utc_midnight(platform, future_day):
    member = make_member(platform, "midnight")
    last_instant = datetime.combine(future_day, time(0), tzinfo=UTC) - timedelta(microseconds=1)
    at(last_instant, member)
    credits_grant(account_id=member.account.pk, amount=Decimal("3"))  # the day before, its last microsecond
    at(last_instant + timedelta(microseconds=1), member)
    credits_grant(account_id=member.account.pk, amount=Decimal("4"))  # the day itself, its first instant
    # The refresh of the day alone sees only its own row; the day before is another bucket.
    ledger_rollups_refresh(days=1, now=datetime.combine(future_day, time(23, 59), tzinfo=UTC))
    assert {(r.day, r.credits_in) for r in LedgerDailyRollup.objects.filter(platform=platform)} == {
        (future_day, Decimal("4"))}
    ledger_rollups_refresh(days=2, now=datetime.combine(future_day, time(0), tzinfo=UTC))
    assert {(r.day, r.credits_in) for r in LedgerDailyRollup.objects.filter(platform=platform)} == {
        (future_day - timedelta(days=1), Decimal("3")), (future_day, Decimal("4"))}


def test_backfill_command_and_task_fill_every_day(platform, future_day):
    member = make_member(platform, "filler")
    for offset in (0, 40, 75):  # more days apart than one backfill chunk
        at(datetime.combine(future_day + timedelta(days=offset), time(8), tzinfo=UTC), member)
        credits_grant(account_id=member.account.pk, amount=Decimal(offset + 1))
    until = (future_day + timedelta(days=75)).isoformat()
    call_command("backfill_ledger_rollups", "--until", until)
    assert rollups() == direct_aggregation()
    assert ledger_rollups_backfill(until=future_day + timedelta(days=75)) == len(direct_aggregation())
    # The beat's task refreshes today and yesterday (nothing of the future days above changes).
    assert ledger_rollups_refresh_task() >= 0
    assert rollups() == direct_aggregation()
