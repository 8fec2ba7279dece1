"""The only place rows of the credits app are locked. The global order, for every path of every app:

1. credit accounts: several at once in primary-key order (``accounts_lock``: a usage batch,
   ``credits.ledger.post_many``), or one (``account_lock``, ``account_lock_for_usage``, ``account_lock_if_free``);
   a single ledger posting's ``UPDATE`` (``credits.ledger.post``) takes its account's row lock inside the
   statement, as the first lock of its transaction or under the account lock its caller already holds;
2. then a hold (``hold_lock``, ``hold_lock_if_free``), only under its account's lock;
3. then rows written under those locks (ledger rows, usage events, rollups, upserted in (account, day, endpoint)
   order), which no other path locks first.

The apps above place the credit account in their own orders: ``subscriptions.locks`` takes all of its locks
before it; ``payments.locks`` takes its webhook, order, subscription and period locks before it, and after it
only rows no credits path locks (auto-recharge's payment method and recharges, parked refund events). The
``_if_free`` variants skip a row another transaction holds (SKIP LOCKED: the expiry sweep leaves it to the next
pass) instead of waiting."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from billing_service.db import server_bound_cursor
from credits import sql
from credits.models import CreditAccount, Hold


def account_lock(*, account_id: uuid.UUID | str) -> CreditAccount | None:
    return CreditAccount.objects.select_for_update().filter(pk=account_id).first()


def account_lock_if_free(*, account_id: uuid.UUID | str) -> CreditAccount | None:
    """The account locked, or None when it is missing or another transaction holds it (no wait)."""
    return CreditAccount.objects.select_for_update(skip_locked=True).filter(pk=account_id).first()


@dataclass(frozen=True, slots=True)
class UsageLock:
    """What a usage charge needs to know of its account, read under the lock."""

    carried_remainder: Decimal
    balance: Decimal
    reserved: Decimal
    external_funding: bool  # usage offered to the funder first (``credits.funding``)


def account_lock_for_usage(*, account_id: uuid.UUID, platform_id: int) -> UsageLock | None:
    """The account of the platform locked (one prepared statement on the usage path), or None when the platform
    has no such account."""
    with server_bound_cursor() as cursor:
        cursor.execute(sql.LOCK_FOR_USAGE, [account_id, platform_id], prepare=True)
        row = cursor.fetchone()
    return UsageLock(*row) if row is not None else None


def accounts_lock(account_ids: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    """Many accounts locked in one round trip, in primary-key order: their rows as ``sql.LOCK_ACCOUNTS`` reads
    them (state columns, the time new rows will carry, the low-balance threshold, the external funding mark).
    Missing ids are left out."""
    with server_bound_cursor() as cursor:
        cursor.execute(sql.LOCK_ACCOUNTS, [list(account_ids)])  # ORDER BY id: locked in that order
        return cursor.fetchall()


def hold_lock(*, hold_id: uuid.UUID | str) -> Hold | None:
    return Hold.objects.select_for_update().filter(pk=hold_id).first()


def hold_lock_if_free(*, hold_id: uuid.UUID | str, **conditions: Any) -> Hold | None:
    """The hold locked if it still meets ``conditions``, or None when it does not or another transaction holds
    it (no wait)."""
    return Hold.objects.select_for_update(skip_locked=True).filter(pk=hold_id, **conditions).first()
