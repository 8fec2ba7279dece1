"""The daily check-in: a member claims the day's credits once per calendar day in the platform's time zone.

``checkin`` writes the day's grant in one statement keyed by the day, beside a unique (account, day) row, so
concurrent check-ins grant once. The credits are ``credits_per_day`` plus the streak bonus of the day (``streak_bonuses``: the n-th day in a
row earns its bonus once per streak), within the month's cap (``monthly_cap``: what check-ins of the calendar
month may grant; a day past the cap is still recorded, with 0 credits). The grant is a ``checkin`` ledger row,
keyed ``checkin:<day>``, with the member as its actor."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Platform
from billing_service.local_time import local_date, local_midnight
from billing_service.money import format_money
from credits import ledger, sql
from credits.errors import AlreadyCheckedIn, BalanceLimitExceeded, CheckinDisabled
from credits.ledger import Posting
from credits.models import Checkin, CheckinConfig, CreditAccount, LedgerEntry, TransactionType
from credits.services.common import actor_id_of

HISTORY_DAYS = 30


@dataclass(frozen=True, slots=True)
class CheckinDay:
    """Where a moment falls for a platform: its local day and the moment the next one begins (UTC)."""

    day: date
    next_at: datetime


def checkin_day(platform: Platform, now: datetime) -> CheckinDay:
    today = local_date(now, platform.time_zone)
    return CheckinDay(today, local_midnight(today + timedelta(days=1), platform.time_zone))


@dataclass(frozen=True, slots=True)
class CheckinResult:
    checkin: Checkin
    entry: LedgerEntry | None
    balance: Decimal
    next_checkin_at: datetime


def checkin(*, platform: Platform, account: CreditAccount, actor: AbstractBaseUser | None,
            now: datetime | None = None) -> CheckinResult:
    """Today's check-in of the member's ``account``: 403 ``checkin_disabled``, 409 ``already_checked_in`` (with
    ``next_checkin_at``), else the check-in and its ledger row.

    No transaction and no lock: what decides the credits (the streak up to yesterday, what this month's earlier
    days granted) is past and cannot change, so one read, then one statement (``sql.CHECKIN_GRANT``: the keyed
    ``checkin`` row and the day's check-in row) that writes only if the day's key is free. Of two concurrent
    check-ins the second finds the key (or the day's row) taken: 409."""
    config = CheckinConfig.objects.filter(platform=platform).first()
    if config is None or not config.enabled:
        raise CheckinDisabled()
    today = checkin_day(platform, now or timezone.now())
    first = min(today.day.replace(day=1), today.day - timedelta(days=1))
    days = {c.day: c for c in Checkin.objects.filter(account_id=account.pk, day__gte=first, day__lte=today.day)}
    if today.day in days:
        raise _already(today)
    previous = days.get(today.day - timedelta(days=1))
    streak = previous.streak + 1 if previous else 1
    month = sum((c.credits for d, c in days.items() if d >= today.day.replace(day=1)), Decimal(0))
    amount = _credits(config, month, streak)
    try:
        if amount == 0:  # nothing to grant (the month's cap): the day is still recorded, for the streak
            row = Checkin.objects.create(account_id=account.pk, day=today.day, streak=streak, credits=amount)
            return CheckinResult(row, None, CreditAccount.objects.get(pk=account.pk).balance, today.next_at)
        entry = _grant(platform, account, today, streak, amount, actor)
    except IntegrityError as exc:  # a concurrent twin took the day first
        raise _already(today) from exc
    if entry is None:  # the key was taken (a twin committed first), or the balance would pass its limit
        if Checkin.objects.filter(account_id=account.pk, day=today.day).exists():
            raise _already(today)
        raise BalanceLimitExceeded()
    row = Checkin(account_id=account.pk, day=today.day, streak=streak, credits=amount, ledger_entry=entry)
    return CheckinResult(row, entry, entry.balance_after, today.next_at)


def _grant(platform: Platform, account: CreditAccount, today: CheckinDay, streak: int, amount: Decimal,
           actor: AbstractBaseUser | None) -> LedgerEntry | None:
    day = today.day.isoformat()
    posting = Posting(
        transaction_type=TransactionType.CHECKIN, balance_delta=amount,
        description=f"Daily check-in {day} (day {streak} in a row)", reference=f"checkin:{day}",
        metadata={"day": day, "streak": streak}, actor_id=actor_id_of(actor), idempotency_key=f"checkin:{day}",
    )
    entry_id = uuid.uuid4()
    params = ledger.chained_params(account.pk, posting, platform_id=platform.pk, entry_id=entry_id)
    params.update(day=today.day, streak=streak)
    return ledger.post_chained(sql.CHECKIN_GRANT, params, posting)


def _already(today: CheckinDay) -> AlreadyCheckedIn:
    return AlreadyCheckedIn(details={"next_checkin_at": today.next_at.isoformat().replace("+00:00", "Z")})


def _credits(config: CheckinConfig, month: Decimal, streak: int) -> Decimal:
    """The day's credits: the daily amount and the streak day's bonus, within what the month's cap leaves after
    the month's earlier check-ins (``month``)."""
    amount = config.credits_per_day + Decimal(str(config.streak_bonuses.get(str(streak), "0")))
    if config.monthly_cap is not None:
        amount = max(min(amount, config.monthly_cap - month), Decimal(0))
    return amount


def checkin_config_set(*, platform: Platform, actor: AbstractBaseUser | None, enabled: bool,
                       credits_per_day: Decimal, streak_bonuses: dict[str, Decimal],
                       monthly_cap: Decimal | None, time_zone: str) -> CheckinConfig:
    """Replaces the platform's check-in configuration (and its time zone, which also sets its seats' weeks)."""
    with transaction.atomic():
        config, _ = CheckinConfig.objects.select_for_update().get_or_create(platform=platform)
        config.enabled, config.credits_per_day, config.monthly_cap = enabled, credits_per_day, monthly_cap
        config.streak_bonuses = {str(day): format_money(bonus) for day, bonus in sorted(streak_bonuses.items(),
                                                                                key=lambda kv: int(kv[0]))}
        config.updated_by_id = actor_id_of(actor)
        config.save()
        if platform.time_zone != time_zone:
            Platform.objects.filter(pk=platform.pk).update(time_zone=time_zone)
            platform.time_zone = time_zone
    return config
