"""The expiry of check-in credits (``CheckinConfig.credits_expire_after_days``).

A check-in that granted credits while expiry was on is a **lot**: its credits, granted by its ``checkin`` ledger
row, expire at its ``expires_at`` (local midnight after the check-in day plus N days, fixed when granted).

Spending order: usage spends a member's expiring credits first, the lot that expires first first (all lots of
one setting have one lifetime, so that is the oldest lot first), and only usage does: ``subtract`` rows spend
lots; refunds, adjustments, rollovers and expiries of other lots do not. A lot stops being spent at its
``expires_at``: usage after that moment spends the next lot, or the other credits.

Nothing of this runs on the debit path. The lots' unspent parts are found when they are needed, by replaying the
lots against the account's usage (``lots_unspent``): one SQL aggregation sums the account's usage debits per
interval between lot events (a grant, by ledger sequence; an expiry, by time), and the intervals are applied to
the lots in spending order in Python (a few dozen intervals, not the debits one by one).

``checkin_credits_expire`` (a periodic task, every 5 minutes, and ``manage.py checkin_expire``) settles the lots
past their expiry: per account, under its lock, one ``expiry`` ledger row taking the unspent parts of its due lots,
but never more than is ``available`` (credits reserved by holds stay reserved: what cannot be taken is forgiven),
and the lots are marked settled (``expired_at``; ``expired_credits``: the unspent part; ``expiry_entry``: the row).
Ledger rows are never edited. A lot with nothing unspent is settled without a row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing_service.db import server_bound_cursor
from billing_service.money import format_money
from credits import ledger, sql
from credits.ledger import Posting
from credits.models import Checkin, LedgerEntry, TransactionType

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Lot:
    """A check-in's expiring credits."""

    id: int
    day: object  # the check-in day (a date)
    credits: Decimal
    granted_sequence: int  # its ``checkin`` ledger row's sequence
    granted_at: datetime
    expires_at: datetime
    expired_at: datetime | None  # settled


_LOT_FIELDS = ("id", "day", "credits", "ledger_entry__sequence", "created_at", "expires_at", "expired_at")


def lots_of(*, account_id: uuid.UUID | str, expiring_by: datetime | None = None) -> list[Lot]:
    """The account's lots in the order of their grants (all of them, or those expiring by ``expiring_by``)."""
    rows = Checkin.objects.filter(account_id=account_id, expires_at__isnull=False, ledger_entry__isnull=False)
    if expiring_by is not None:
        rows = rows.filter(expires_at__lte=expiring_by)
    return [Lot(*row) for row in rows.order_by("ledger_entry__sequence").values_list(*_LOT_FIELDS)]


def _spending_order(lot: Lot) -> tuple:
    return lot.expires_at, lot.granted_sequence


def lots_unspent(*, account_id: uuid.UUID | str, lots: list[Lot], of: list[Lot]) -> dict[int, Decimal]:
    """What is left of each lot of ``of`` (a subset of ``lots``, the account's lots in grant order): of an expired
    lot, at its expiry; of the others, now.

    A lot's unspent part depends only on the lots ahead of it in spending order and on the usage since the
    oldest of them was granted, so ``lots`` may leave out lots behind every lot of ``of`` (expiring later).
    The replay starts at the last grant before which every earlier lot had expired (a moment with no lot
    alive), at or before the first lot of ``of``: what came before it is over."""
    if not of:
        return {}
    position = {lot.id: i for i, lot in enumerate(lots)}
    first = min(position[lot.id] for lot in of)
    start, latest = 0, None
    for i, lot in enumerate(lots[: first + 1]):
        if latest is None or latest <= lot.granted_at:
            start = i  # no earlier lot alive when this one was granted
        latest = lot.expires_at if latest is None else max(latest, lot.expires_at)
    left, _ = _replay(account_id, lots[start:], mark=None)
    return {lot.id: left[lot.id] for lot in of}


def _replay(account_id: uuid.UUID | str, replayed: list[Lot], *, mark: int | None) -> tuple[dict[int, Decimal], Decimal]:
    """The lots of ``replayed`` (in grant order, from a moment no earlier lot was alive) against the account's
    usage: what is left of each, and how much of the usage after ledger sequence ``mark`` they paid."""
    by_expiry = sorted(replayed, key=_spending_order)
    grant_rank = {lot.id: i for i, lot in enumerate(replayed)}  # width_bucket of a later debit's sequence > rank
    left = {lot.id: lot.credits for lot in replayed}
    absorbed_after = ZERO
    with server_bound_cursor() as cursor:
        cursor.execute(sql.CHECKIN_LOTS_SPENT, {
            "account_id": account_id,
            "grants": [lot.granted_sequence for lot in replayed],
            "expiries": [lot.expires_at for lot in by_expiry],
            "after": replayed[0].granted_sequence,
            "until": by_expiry[-1].expires_at,
            "mark": mark if mark is not None else replayed[-1].granted_sequence,
        })
        intervals = cursor.fetchall()
    for granted, expired, after_mark, spent in intervals:  # in the order they happened
        for lot in by_expiry[expired:]:  # the lots not expired yet, in spending order
            if spent <= 0:
                break
            if grant_rank[lot.id] >= granted or left[lot.id] == 0:
                continue  # not granted yet, or spent
            taken = min(left[lot.id], spent)
            left[lot.id] -= taken
            spent -= taken
            if after_mark:
                absorbed_after += taken
    return left, absorbed_after


def lots_absorbed(*, account_id: uuid.UUID | str, after_sequence: int) -> Decimal:
    """The usage after ledger sequence ``after_sequence`` that check-in lots paid. Lots are spent first, so another
    rule of expiring credits (a plan period's close, ``payments.plan_periods``) does not count that usage as
    spending its own credits: one spending order for both. 0 without lots (one query)."""
    lots = lots_of(account_id=account_id)
    if not lots:
        return ZERO
    return _replay(account_id, lots, mark=after_sequence)[1]


@dataclass(frozen=True, slots=True)
class Expiring:
    amount: Decimal
    expires_at: datetime


def checkin_credits_expiring(*, account_id: uuid.UUID | str, now: datetime) -> list[Expiring]:
    """The unspent parts of the account's lots not expired at ``now``, the soonest first (none: nothing expires).
    One query without lots; two with them."""
    lots = lots_of(account_id=account_id)
    pending = [lot for lot in lots if lot.expires_at > now]
    left = lots_unspent(account_id=account_id, lots=lots, of=pending)
    return [Expiring(left[lot.id], lot.expires_at) for lot in sorted(pending, key=_spending_order) if left[lot.id] > 0]


@dataclass(frozen=True, slots=True)
class ExpiryRun:
    """What a run of ``checkin_credits_expire`` did."""

    accounts: int = 0  # accounts with lots settled
    lots: int = 0  # lots settled
    entries: int = 0  # ``expiry`` ledger rows written
    taken: Decimal = ZERO  # credits those rows took
    forgiven: Decimal = ZERO  # unspent credits that were not available (reserved by holds), left to the member

    def __add__(self, other: ExpiryRun) -> ExpiryRun:
        return ExpiryRun(self.accounts + other.accounts, self.lots + other.lots, self.entries + other.entries,
                         self.taken + other.taken, self.forgiven + other.forgiven)


def checkin_credits_expire(*, now: datetime | None = None, batch_size: int = 500) -> ExpiryRun:
    """Settles every check-in lot past its expiry at ``now``: each account with due lots in its own short
    transaction, under its lock (``_account_expire``). Safe beside live traffic and beside itself: a second run
    finds the lots settled and writes nothing."""
    now = now or timezone.now()
    run = ExpiryRun()
    after = None
    while True:
        due = Checkin.objects.filter(expires_at__lte=now, expired_at__isnull=True)  # the partial index
        if after is not None:
            due = due.filter(account_id__gt=after)
        accounts = list(due.order_by("account_id").values_list("account_id", flat=True).distinct()[:batch_size])
        for account_id in accounts:
            run += _account_expire(account_id=account_id, now=now)
        if len(accounts) < batch_size:
            return run
        after = accounts[-1]


def _account_expire(*, account_id: uuid.UUID, now: datetime) -> ExpiryRun:
    with transaction.atomic(durable=True):
        state = ledger.lock_accounts([account_id]).get(account_id)
        if state is None:
            return ExpiryRun()
        # The time the account's next ledger row will carry: a usage debit committed after this one is stamped
        # no earlier, so the replay of a lot settled now never changes.
        cutoff = min(now, state.last_entry_at)
        lots = lots_of(account_id=account_id, expiring_by=cutoff)
        due = [lot for lot in lots if lot.expired_at is None]
        if not due:
            return ExpiryRun()
        left = lots_unspent(account_id=account_id, lots=lots, of=due)
        unspent = [lot for lot in due if left[lot.id] > 0]
        total = sum((left[lot.id] for lot in unspent), ZERO)
        taken = min(total, max(state.values["balance"] - state.values["reserved"], ZERO))
        entry = _post_expiry(account_id, unspent, left, total, taken) if taken > 0 else None
        settled_at = entry.created_at if entry is not None else state.last_entry_at
        Checkin.objects.bulk_update(  # one UPDATE
            [Checkin(pk=lot.id, expired_at=settled_at, expired_credits=left[lot.id],
                     expiry_entry=entry if left[lot.id] > 0 else None) for lot in due],
            ["expired_at", "expired_credits", "expiry_entry"],
        )
        return ExpiryRun(1, len(due), 1 if entry is not None else 0, taken, total - taken)


def _post_expiry(account_id: uuid.UUID, lots: list[Lot], left: dict[int, Decimal], total: Decimal,
                 taken: Decimal) -> LedgerEntry:
    key = f"expiry:checkin:{lots[0].id}-{lots[-1].id}"
    days = ", ".join(str(lot.day) for lot in lots)
    posting = Posting(
        transaction_type=TransactionType.EXPIRY, balance_delta=-taken,
        description=f"Check-in credits expired: {days}", reference=key, idempotency_key=key,
        metadata={
            "checkins": [{"id": lot.id, "day": str(lot.day), "unspent": format_money(left[lot.id])} for lot in lots],
            "unspent": format_money(total), "forgiven": format_money(total - taken),
        },
    )
    return ledger.post(account_id, posting, savepoint=False).entry
