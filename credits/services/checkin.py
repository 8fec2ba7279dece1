"""The daily check-in: a member claims the day's credits once per calendar day in the platform's time zone.

``checkin`` writes the day's grant in one statement keyed by the day, beside a unique (account, day) row, so
concurrent check-ins grant once. The credits are ``credits_per_day`` plus the streak bonus of the day (``streak_bonuses``: the n-th day in a
row earns its bonus once per streak), within the month's cap (``monthly_cap``: what check-ins of the calendar
month may grant; a day past the cap is still recorded, with 0 credits). The grant is a ``checkin`` ledger row,
keyed ``checkin:<day>``, with the member as its actor. With ``credits_expire_after_days`` set, the check-in's
credits expire at the local midnight that ends the N-th day after the check-in day (``Checkin.expires_at``, written
by the same statement); ``credits.services.expiry`` takes back what is unspent then."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Platform
from billing_service.db import server_bound_cursor
from billing_service.local_time import local_date, local_midnight
from billing_service.money import format_money
from credits import ledger, sql
from credits.errors import AccountNotFound, AlreadyCheckedIn, BalanceLimitExceeded, CheckinDisabled
from credits.ledger import Posting
from credits.models import Checkin, CheckinConfig, CreditAccount, LedgerEntry, TransactionType
from credits.services.common import actor_id_of

HISTORY_DAYS = 30
MAX_EXPIRY_DAYS = 3650


@dataclass(frozen=True, slots=True)
class CheckinDay:
    """Where a moment falls for a platform: its local day and the moment the next one begins (UTC)."""

    day: date
    next_at: datetime


def checkin_day(platform: Platform, now: datetime) -> CheckinDay:
    return _day(platform.time_zone, now)


def _day(time_zone: str, now: datetime) -> CheckinDay:
    today = local_date(now, time_zone)
    return CheckinDay(today, local_midnight(today + timedelta(days=1), time_zone))


@dataclass(frozen=True, slots=True)
class CheckinResult:
    checkin: Checkin
    entry: LedgerEntry | None
    balance: Decimal
    next_checkin_at: datetime


def checkin(*, platform: Platform, account: CreditAccount | None = None, user: AbstractBaseUser | None = None,
            actor: AbstractBaseUser | None, now: datetime | None = None) -> CheckinResult:
    """Today's check-in of the member's ``account`` (or of ``user``'s account on the platform): 403
    ``checkin_disabled``, 409 ``already_checked_in`` (with ``next_checkin_at``), else the check-in and its ledger
    row.

    No transaction and no lock: what decides the credits (the streak up to yesterday, what this month's earlier
    days granted) is past and cannot change, so one read (``checkin_state_read``: the settings, the time zone, the
    account and its recent days, one prepared statement), then one statement (``sql.CHECKIN_GRANT``: the keyed
    ``checkin`` row and the day's check-in row, with its expiry) that writes only if the day's key is free. Of two
    concurrent check-ins the second finds the key (or the day's row) taken: 409."""
    now = now or timezone.now()
    state = checkin_state_read(platform=platform, account=account, user=user, now=now)
    if state.config is None or not state.config.enabled:
        raise CheckinDisabled()
    if state.account_id is None:
        raise AccountNotFound()
    today = _day(state.time_zone, now)
    first = min(today.day.replace(day=1), today.day - timedelta(days=1))
    days = {day: (streak, credits) for day, streak, credits in state.days if first <= day <= today.day}
    if today.day in days:
        raise _already(today)
    previous = days.get(today.day - timedelta(days=1))
    streak = previous[0] + 1 if previous else 1
    month = sum((credits for d, (_, credits) in days.items() if d >= today.day.replace(day=1)), Decimal(0))
    amount = _credits(state.config, month, streak)
    expires_at = _expiry(state.time_zone, state.config, today.day) if amount else None
    account_id = state.account_id
    try:
        if amount == 0:  # nothing to grant (the month's cap): the day is still recorded, for the streak
            row = Checkin.objects.create(account_id=account_id, day=today.day, streak=streak, credits=amount)
            return CheckinResult(row, None, CreditAccount.objects.get(pk=account_id).balance, today.next_at)
        entry = _grant(platform, account_id, today, streak, amount, actor, expires_at)
    except IntegrityError as exc:  # a concurrent twin took the day first
        raise _already(today) from exc
    if entry is None:  # the key was taken (a twin committed first), or the balance would pass its limit
        if Checkin.objects.filter(account_id=account_id, day=today.day).exists():
            raise _already(today)
        raise BalanceLimitExceeded()
    row = Checkin(account_id=account_id, day=today.day, streak=streak, credits=amount, ledger_entry=entry,
                  expires_at=expires_at)
    return CheckinResult(row, entry, entry.balance_after, today.next_at)


@dataclass(frozen=True, slots=True)
class CheckinState:
    time_zone: str
    config: CheckinConfig | None
    account_id: uuid.UUID | None
    days: list[tuple[date, int, Decimal]]  # check-ins of a range that holds this month's and yesterday's

    def day(self, now: datetime) -> CheckinDay:
        return _day(self.time_zone, now)


def checkin_state_read(*, platform: Platform, account: CreditAccount | None = None,
                       user: AbstractBaseUser | None = None, now: datetime) -> CheckinState:
    """The one read of a check-in (and of the member's check-in state), a prepared statement: the platform's time
    zone, its settings, the account (``account``, or ``user``'s) and its check-ins of the days around ``now``. The
    local day is not known before the time zone is read, so the days read are those of every day it can be
    (UTC-12..UTC+14: the UTC day before, of, or after ``now``); ``checkin`` keeps the ones it needs."""
    utc_day = now.astimezone(UTC).date()
    params = {"platform_id": platform.pk, "first": min((utc_day - timedelta(days=1)).replace(day=1),
                                                       utc_day - timedelta(days=2)),
              "last": utc_day + timedelta(days=1)}
    if account is not None:
        statement, params["account_id"] = sql.CHECKIN_STATE_OF_ACCOUNT, account.pk
    else:
        statement, params["user_id"] = sql.CHECKIN_STATE_OF_USER, user.pk if user is not None else None
    with server_bound_cursor() as cursor:
        cursor.execute(statement, params, prepare=True)
        row = cursor.fetchone()
    if row is None:
        raise CheckinDisabled()  # no such platform
    time_zone, enabled, per_day, bonuses, cap, expire_days, account_id, days, streaks, credits = row
    config = None if enabled is None else CheckinConfig(
        platform_id=platform.pk, enabled=enabled, credits_per_day=per_day, streak_bonuses=json.loads(bonuses),
        monthly_cap=cap, credits_expire_after_days=expire_days)
    return CheckinState(time_zone, config, account_id,
                        list(zip(days or [], streaks or [], credits or [], strict=True)))


def _grant(platform: Platform, account_id: uuid.UUID, today: CheckinDay, streak: int, amount: Decimal,
           actor: AbstractBaseUser | None, expires_at: datetime | None) -> LedgerEntry | None:
    day = today.day.isoformat()
    posting = Posting(
        transaction_type=TransactionType.CHECKIN, balance_delta=amount,
        description=f"Daily check-in {day} (day {streak} in a row)", reference=f"checkin:{day}",
        metadata={"day": day, "streak": streak}, actor_id=actor_id_of(actor), idempotency_key=f"checkin:{day}",
    )
    entry_id = uuid.uuid4()
    params = ledger.chained_params(account_id, posting, platform_id=platform.pk, entry_id=entry_id)
    params.update(day=today.day, streak=streak, expires_at=expires_at)
    return ledger.post_chained(sql.CHECKIN_GRANT, params, posting)


def _expiry(time_zone: str, config: CheckinConfig, day: date) -> datetime | None:
    """When the credits of a check-in on ``day`` expire: the local midnight that ends the N-th day after it
    (``credits_expire_after_days``; None: never). Day D with N = 30 keeps them through day D + 30."""
    days = config.credits_expire_after_days
    return local_midnight(day + timedelta(days=days + 1), time_zone) if days else None


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
                       monthly_cap: Decimal | None, time_zone: str,
                       credits_expire_after_days: int | None = None) -> CheckinConfig:
    """Replaces the platform's check-in configuration (and its time zone, which also sets its seats' weeks).
    ``credits_expire_after_days``: the credits of later check-ins expire (``credits.services.expiry``); a change
    leaves the expiry of credits already granted as it was."""
    if credits_expire_after_days is not None and not (
            type(credits_expire_after_days) is int and 1 <= credits_expire_after_days <= MAX_EXPIRY_DAYS):
        raise ValueError(f"credits_expire_after_days is 1..{MAX_EXPIRY_DAYS} or None")
    with transaction.atomic():
        config, _ = CheckinConfig.objects.select_for_update().get_or_create(platform=platform)
        config.enabled, config.credits_per_day, config.monthly_cap = enabled, credits_per_day, monthly_cap
        config.streak_bonuses = {str(day): format_money(bonus) for day, bonus in sorted(streak_bonuses.items(),
                                                                                key=lambda kv: int(kv[0]))}
        config.credits_expire_after_days = credits_expire_after_days
        config.updated_by_id = actor_id_of(actor)
        config.save()
        if platform.time_zone != time_zone:
            Platform.objects.filter(pk=platform.pk).update(time_zone=time_zone)
            platform.time_zone = time_zone
    return config
