"""The ledger's invariants checked from the rows (``verify_ledger``, and the tests): every account's running totals,
sequence, counters, reserved amount and usage charges, streamed whatever the ledger's size."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import F, Q, QuerySet, Sum, Window
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan
from django.db.models.functions import RowNumber

from billing_service.money import EXACT_CONTEXT
from credits.models import ArchivedTotals, CreditAccount, Hold, HoldStatus, LedgerEntry, TransactionType, UsageEvent

@dataclass(frozen=True, slots=True)
class LedgerCheck:
    account_id: uuid.UUID
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def ledger_verify(*, account: CreditAccount) -> LedgerCheck:
    """Checks every ledger invariant of one account against its rows (reads them all); ``account`` is refreshed
    from the database, as checked."""
    account.refresh_from_db()
    return next(ledger_verify_accounts(CreditAccount.objects.filter(pk=account.pk)))


# Accounts checked together (their holds and usage summed in one query each), and ledger rows read per query: memory
# stays bounded whatever the ledger's size, and no server-side cursor is needed (keyset pages, not a held cursor).
VERIFY_ACCOUNTS_PER_BATCH = 1000
VERIFY_ROWS_PER_CHUNK = 20_000
_VERIFY_COLUMNS = ("account_id", "sequence", "transaction_type", "balance_delta", "reserved_delta", "balance_after",
                   "reserved_after", "created_at")


def ledger_verify_accounts(
    accounts: QuerySet[CreditAccount], *, on_rows: Callable[[int], object] | None = None,
    accounts_per_batch: int = VERIFY_ACCOUNTS_PER_BATCH, rows_per_chunk: int = VERIFY_ROWS_PER_CHUNK,
) -> Iterator[LedgerCheck]:
    """``ledger_verify`` of each of ``accounts``, in id order, streamed: accounts in batches, their ledger rows in
    keyset-paged chunks ordered by (account, sequence). ``on_rows(n)`` is told each chunk's size (a progress bar)."""
    last_id = None
    while True:
        page = accounts.order_by("pk")
        batch = list((page.filter(pk__gt=last_id) if last_id else page)[:accounts_per_batch])
        if not batch:
            return
        ids = [account.pk for account in batch]
        # What detached months held (``credits.partitions``): the folds and the usage sums start from it.
        archived = {row.account_id: row for row in ArchivedTotals.objects.filter(account_id__in=ids)}
        folds = {account_id: _LedgerFold(archived.get(account_id)) for account_id in ids}
        for rows in _ledger_chunks(ids, rows_per_chunk):
            for row in rows:
                folds[row[0]].add(row)
            if on_rows is not None:
                on_rows(len(rows))
        holds = dict(Hold.objects.filter(account_id__in=ids, status=HoldStatus.ACTIVE).order_by()
                     .values("account_id").annotate(t=Sum(F("amount") - F("funded"))).values_list("account_id", "t"))
        usage = {row[0]: row[1:] for row in UsageEvent.objects.filter(account_id__in=ids).order_by()
                 .values("account_id").annotate(cost=Sum("cost"), charged=Sum("charged"), funded=Sum("funded"))
                 .values_list("account_id", "cost", "charged", "funded")}
        mismatched: dict[uuid.UUID, list[str]] = {}
        for account_id, request_id in _usage_mismatches(ids):
            mismatched.setdefault(account_id, []).append(request_id)
        for account in batch:
            problems = folds[account.pk].finish(account, active_holds=holds.get(account.pk) or Decimal(0))
            problems += _usage_charge_problems(account, usage.get(account.pk), mismatched.get(account.pk, []),
                                               archived.get(account.pk))
            yield LedgerCheck(account_id=account.pk, problems=problems)
        last_id = ids[-1]


def _ledger_chunks(account_ids: list[uuid.UUID], size: int) -> Iterator[list[tuple]]:
    """The ledger rows of ``account_ids`` ordered by (account, sequence), ``size`` at a time (keyset pages)."""
    rows = LedgerEntry.objects.filter(account_id__in=account_ids).order_by("account_id", "sequence")
    after: tuple | None = None
    while True:
        # (account_id, sequence) > (a, s): a row comparison, which PostgreSQL turns into the start of the index scan
        # (an OR of the two cases is a filter over every row before it: each page slower than the last).
        page = rows if after is None else rows.filter(
            TupleGreaterThan(Tuple(F("account_id"), F("sequence")), after))
        # The ORM's SQL, run on a plain cursor: the columns need no conversion (psycopg gives Decimal, UUID, aware
        # datetimes), and the values_list iterator's per-row work would double the time of a ledger-wide check.
        sql, params = page.values_list(*_VERIFY_COLUMNS)[:size].query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            chunk = cursor.fetchall()
        if not chunk:
            return
        yield chunk
        if len(chunk) < size:
            return
        after = chunk[-1][:2]


class _LedgerFold:
    """One account's ledger rows, folded in sequence order: the running totals each row must carry, and the
    counters the account keeps."""

    __slots__ = ("balance", "reserved", "expected_sequence", "last_created", "counts", "problems")

    def __init__(self, archived: ArchivedTotals | None = None) -> None:
        self.balance = archived.balance if archived else Decimal(0)
        self.reserved = archived.reserved if archived else Decimal(0)
        self.expected_sequence = archived.through_sequence + 1 if archived else 1
        self.last_created = None
        self.counts: dict[str, int] = dict(archived.counts) if archived else {}
        self.problems: list[str] = []

    def add(self, row: tuple) -> None:
        _, sequence, transaction_type, balance_delta, reserved_delta, balance_after, reserved_after, created_at = row
        problems = self.problems
        if sequence != self.expected_sequence:
            problems.append(f"sequence gap: expected {self.expected_sequence}, found {sequence}")
            self.expected_sequence = sequence
        self.balance += balance_delta
        self.reserved += reserved_delta
        if balance_after != self.balance or reserved_after != self.reserved:
            problems.append(f"row {sequence}: running totals {self.balance}/{self.reserved} != stored "
                            f"{balance_after}/{reserved_after}")
        if self.balance - self.reserved < 0:
            problems.append(f"row {sequence}: available below zero")
        if self.last_created is not None and created_at < self.last_created:
            problems.append(f"row {sequence}: created_at goes back in time")
        self.last_created = created_at
        self.counts[transaction_type] = self.counts.get(transaction_type, 0) + 1
        self.expected_sequence += 1

    def finish(self, account: CreditAccount, *, active_holds: Decimal) -> list[str]:
        problems = self.problems
        if account.balance != self.balance:
            problems.append(f"balance {account.balance} != sum of balance effects {self.balance}")
        if account.reserved != self.reserved:
            problems.append(f"reserved {account.reserved} != sum of reserved effects {self.reserved}")
        if account.reserved != active_holds:  # a funder (a seat) reserves the funded part: amount - funded
            problems.append(f"reserved {account.reserved} != active holds {active_holds}")
        if account.last_sequence != self.expected_sequence - 1:
            problems.append(f"last_sequence {account.last_sequence} != rows {self.expected_sequence - 1}")
        for transaction_type in TransactionType.values:
            n = self.counts.get(transaction_type, 0)
            if account.count_of(transaction_type) != n:
                problems.append(f"count_{transaction_type} {account.count_of(transaction_type)} != rows {n}")
        return problems


def _usage_mismatches(account_ids: list[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
    """Usage events of ``account_ids`` whose charge has no ledger row or differs from it (normally none): the first
    five of each account."""
    unbacked = Q(charged__gt=0, ledger_entry__isnull=True)
    disagreeing = Q(ledger_entry__isnull=False) & ~Q(ledger_entry__balance_delta=-F("charged"))
    nth = Window(RowNumber(), partition_by=F("account_id"), order_by=F("request_id").asc())
    return list(UsageEvent.objects.filter(account_id__in=account_ids).filter(unbacked | disagreeing).annotate(nth=nth)
                .filter(nth__lte=5).order_by("account_id", "request_id").values_list("account_id", "request_id"))


def _usage_charge_problems(
    account: CreditAccount, totals: tuple | None, mismatched: list[str], archived: ArchivedTotals | None
) -> list[str]:
    """Usage charges are exact: the usage debits plus the carried remainder plus what funders (seats) paid equal
    the events' exact costs (of the attached months and the detached ones), and each event's ``charged`` is what
    its ledger row took."""
    problems = []
    cost, charged, funded = (value or Decimal(0) for value in (totals or (None, None, None)))
    if archived is not None:
        cost = EXACT_CONTEXT.add(cost, archived.usage_cost)
        charged = EXACT_CONTEXT.add(charged, archived.usage_charged)
        funded = EXACT_CONTEXT.add(funded, archived.usage_funded)
    if EXACT_CONTEXT.add(EXACT_CONTEXT.add(charged, account.carried_remainder), funded) != cost:
        problems.append(
            f"usage debits {charged} + carried remainder {account.carried_remainder} + funded {funded} "
            f"!= exact costs {cost}"
        )
    for request_id in mismatched:
        problems.append(f"usage event {request_id!r}: charged differs from its ledger row")
    return problems
