"""The daily check-in: a member claims the day's credits once per calendar day in the platform's time zone.

``checkin`` runs under the member's account lock and the unique (account, day) row, so concurrent check-ins grant
once. The credits are ``credits_per_day`` plus the streak bonus of the day (``streak_bonuses``: the n-th day in a
row earns its bonus once per streak), within the month's cap (``monthly_cap``: what check-ins of the calendar
month may grant; a day past the cap is still recorded, with 0 credits). The grant is a ``checkin`` ledger row,
keyed ``checkin:<day>``, with the member as its actor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Platform
from billing_service.local_time import local_date, local_midnight
from billing_service.money import format_money
from credits import ledger
from credits.errors import AlreadyCheckedIn, CheckinDisabled
from credits.ledger import Posting
from credits.locks import account_lock
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
    ``next_checkin_at``), else the check-in and its ledger row."""
    config = CheckinConfig.objects.filter(platform=platform).first()
    if config is None or not config.enabled:
        raise CheckinDisabled()
    today = checkin_day(platform, now or timezone.now())
    try:
        with transaction.atomic(durable=True):
            locked = account_lock(account_id=account.pk)
            if Checkin.objects.filter(account_id=account.pk, day=today.day).exists():
                raise _already(today)
            previous = Checkin.objects.filter(account_id=account.pk, day=today.day - timedelta(days=1)).first()
            streak = previous.streak + 1 if previous else 1
            amount = _credits(config, account, today.day, streak)
            entry = None
            if amount > 0:
                entry = ledger.post(account.pk, Posting(
                    transaction_type=TransactionType.CHECKIN, balance_delta=amount,
                    description=f"Daily check-in {today.day.isoformat()} (day {streak} in a row)",
                    reference=f"checkin:{today.day.isoformat()}", metadata={"day": today.day.isoformat(),
                                                                            "streak": streak},
                    actor_id=actor_id_of(actor), idempotency_key=f"checkin:{today.day.isoformat()}",
                ), savepoint=False).entry
            row = Checkin.objects.create(account_id=account.pk, day=today.day, streak=streak, credits=amount,
                                         ledger_entry=entry)
    except IntegrityError as exc:  # a concurrent twin: the lock makes it unreachable, the constraint proves it
        raise _already(today) from exc
    balance = entry.balance_after if entry else locked.balance
    return CheckinResult(row, entry, balance, today.next_at)


def _already(today: CheckinDay) -> AlreadyCheckedIn:
    return AlreadyCheckedIn(details={"next_checkin_at": today.next_at.isoformat().replace("+00:00", "Z")})


def _credits(config: CheckinConfig, account: CreditAccount, day: date, streak: int) -> Decimal:
    """The day's credits: the daily amount and the streak day's bonus, within what the month's cap leaves."""
    amount = config.credits_per_day + Decimal(str(config.streak_bonuses.get(str(streak), "0")))
    if config.monthly_cap is not None:
        earned = Checkin.objects.filter(account_id=account.pk, day__gte=day.replace(day=1), day__lte=day).aggregate(
            total=Sum("credits"))["total"] or Decimal(0)
        amount = max(min(amount, config.monthly_cap - earned), Decimal(0))
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
