"""History partitioned by month (``credits.partitions``): rows land in their month, a key or a request_id is still
used once per account across months, references to partitioned rows are checked at commit as foreign keys were,
the coming months are created ahead, a row of a month without a partition lands in the default one, and an old
month detaches (usage events first, then the ledger) with the ledger still verifiable and its keys released.

Time: the ledger stamps a row with ``GREATEST(clock, last_entry_at)``, so a row of a coming month is written by
pinning the account's ``last_entry_at`` to it (``LedgerClock``'s mechanism); "now" is given to the detach."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from credits.errors import HistoryError, IdempotencyConflict
from credits.models import ArchivedTotals, Checkin, CreditAccount, LedgerEntry, LedgerKey, UsageKey
from credits.partitions import (
    EVENTS,
    LEDGER,
    month_after,
    month_start,
    partition_create,
    partition_detach,
    partition_months,
    partition_name,
    partitions_ensure,
    references,
)
from credits.services import credits_debit, credits_grant, credits_refund
from credits.services.usage import usage_record
from credits.services.usage_events import UsageInput
from credits.verification import ledger_verify

pytestmark = pytest.mark.django_db

THIS_MONTH = month_start(datetime.now(UTC))


def instant(month: date, day: int = 10) -> datetime:
    return datetime(month.year, month.month, day, 12, tzinfo=UTC)


def pin(account, moment: datetime) -> None:  # noqa: ANN001
    """The account's next ledger rows carry ``moment``."""
    CreditAccount.objects.filter(pk=account.pk).update(last_entry_at=moment)


def home_of(table: str, row_id: uuid.UUID) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [row_id])
        return cursor.fetchone()[0]


def check_deferred() -> None:
    """Runs the checks deferred to commit now (the test's transaction never commits)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def record(platform, account, request_id: str, amount: str = "1.00"):  # noqa: ANN001, ANN201
    usage = UsageInput(account_id=account.pk, request_id=request_id, endpoint="chat", amount=D(amount))
    return usage_record(platform=platform, usage=usage)


# --- rows in their month, keys across months ----------------------------------------------------------------


def test_a_row_lands_in_the_month_it_was_written(platform, member):
    entry = credits_debit(account_id=member.account.pk, amount=D("1.00")).entry
    event = record(platform, member.account, "r-1").event
    assert home_of(LEDGER, entry.pk) == partition_name(LEDGER, month_start(entry.created_at))
    assert home_of(EVENTS, event.pk) == partition_name(EVENTS, month_start(event.recorded_at))
    later = month_after(THIS_MONTH, 2)
    pin(member.account, instant(later))
    entry = credits_debit(account_id=member.account.pk, amount=D("1.00")).entry
    assert home_of(LEDGER, entry.pk) == partition_name(LEDGER, later)
    assert ledger_verify(account=member.account).ok


def test_a_key_used_in_one_month_replays_in_a_later_one_and_refuses_another_request(member):
    first = credits_debit(account_id=member.account.pk, amount=D("2.00"), idempotency_key="k-1")
    pin(member.account, instant(month_after(THIS_MONTH, 2)))
    again = credits_debit(account_id=member.account.pk, amount=D("2.00"), idempotency_key="k-1")
    assert again.replayed and again.entry.pk == first.entry.pk
    with pytest.raises(IdempotencyConflict):
        credits_debit(account_id=member.account.pk, amount=D("3.00"), idempotency_key="k-1")
    assert LedgerEntry.objects.filter(account_id=member.account.pk, idempotency_key="k-1").count() == 1
    assert LedgerKey.objects.get(account_id=member.account.pk, idempotency_key="k-1").entry_id == first.entry.pk


def _copy_to(table: str, row_id: uuid.UUID, column: str, moment: datetime, **changes: object) -> None:
    """Inserts a copy of a row with a new id, ``column`` set to ``moment`` and ``changes``."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [row_id])
        names = [c.name for c in cursor.description]
        values = dict(zip(names, cursor.fetchone(), strict=True)) | {"id": uuid.uuid4(), column: moment} | changes
        if "metadata" in values:
            values["metadata"] = "{}"
        cursor.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))})",
                       list(values.values()))


def test_the_database_refuses_a_key_twice_for_an_account_even_in_another_month(member):
    entry = credits_debit(account_id=member.account.pk, amount=D("2.00"), idempotency_key="k-1").entry
    later = instant(month_after(THIS_MONTH, 2))
    with pytest.raises(IntegrityError, match="credits_ledger_key_pkey"), transaction.atomic():
        _copy_to(LEDGER, entry.pk, "created_at", later, sequence=entry.sequence + 100)
    _copy_to(LEDGER, entry.pk, "created_at", later, sequence=entry.sequence + 100, idempotency_key="k-2")


def test_the_database_refuses_a_request_id_twice_for_an_account_even_in_another_month(platform, member):
    event = record(platform, member.account, "r-1").event
    with pytest.raises(IntegrityError, match="credits_usage_key_pkey"), transaction.atomic():
        _copy_to(EVENTS, event.pk, "recorded_at", instant(month_after(THIS_MONTH, 2)))
    assert UsageKey.objects.get(account_id=member.account.pk, request_id="r-1").event_id == event.pk


def test_a_sequence_twice_in_a_month_is_refused(member):
    entry = credits_debit(account_id=member.account.pk, amount=D("2.00")).entry
    with pytest.raises(IntegrityError, match="sequence"), transaction.atomic():
        _copy_to(LEDGER, entry.pk, "created_at", entry.created_at)


# --- references to partitioned rows -------------------------------------------------------------------------


def test_every_reference_to_a_partitioned_row_has_its_triggers_and_no_foreign_key():
    refs = references()
    assert {(r.table, r.column) for r in refs} >= {
        ("payments_order", "ledger_entry_id"), ("credits_usageevent", "ledger_entry_id"),
        ("credits_ledger_entry", "refund_of_id"), ("entitlements_seatcharge", "usage_event_id"),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal")
        triggers = set(cursor.fetchall())
    for ref in refs:
        assert not ref.field.db_constraint
        assert {(ref.table, f"{ref.name}_insert"), (ref.table, f"{ref.name}_update")} <= triggers


def test_a_reference_to_a_ledger_row_that_does_not_exist_is_refused_at_commit(member):
    entry = credits_grant(account_id=member.account.pk, amount=D("1.00")).entry
    Checkin.objects.create(account=member.account, day=date(2040, 1, 1), streak=1, credits=D("1.00"),
                           ledger_entry_id=entry.pk)
    check_deferred()
    with pytest.raises(IntegrityError, match="credits_checkin_ledger_entry_id_ref"), transaction.atomic():
        Checkin.objects.create(account=member.account, day=date(2040, 1, 2), streak=1, credits=D("1.00"),
                               ledger_entry_id=uuid.uuid4())
        check_deferred()


def test_a_refund_must_name_a_ledger_row(member):
    with pytest.raises(IntegrityError, match="refund_of_id"), transaction.atomic():
        _copy_to(LEDGER, credits_grant(account_id=member.account.pk, amount=D("1.00")).entry.pk, "created_at",
                 datetime.now(UTC), sequence=9999, refund_of_id=uuid.uuid4(), idempotency_key=None)
        check_deferred()


def test_a_usage_event_named_by_a_seat_charge_cannot_be_deleted(platform, member):
    from entitlements.models import SeatCharge
    from tests.entitlements.test_api import charge
    from tests.entitlements.conftest import make_ai_plan

    event = record(platform, member.account, "r-1").event
    seat_charge = charge(platform, member.user, make_ai_plan(), "0.10", datetime.now(UTC))

    def charge_of(event_id: uuid.UUID) -> None:  # seat charges are append-only: a copy naming the event
        fields = {f.attname: getattr(seat_charge, f.attname) for f in SeatCharge._meta.concrete_fields}
        SeatCharge.objects.create(**fields | {"id": uuid.uuid4(), "usage_event_id": event_id})

    charge_of(event.pk)
    check_deferred()
    with pytest.raises(IntegrityError, match="entitlements_seatcharge_usage_event_id_ref"), transaction.atomic(), \
            connection.cursor() as cursor:  # the database's refusal (the ORM's PROTECT refuses first)
        cursor.execute(f"DELETE FROM {EVENTS} WHERE id = %s", [event.pk])
    with pytest.raises(IntegrityError, match="entitlements_seatcharge_usage_event_id_ref"), transaction.atomic():
        charge_of(uuid.uuid4())
        check_deferred()


# --- months created ahead, and the default partition ----------------------------------------------------------


def test_the_coming_months_are_created_once(settings):
    ahead = settings.PARTITION_MONTHS_AHEAD
    assert partition_months(LEDGER)[-1] == month_after(THIS_MONTH, ahead)
    created = partitions_ensure(months_ahead=ahead + 2)
    assert created == [partition_name(table, month_after(THIS_MONTH, ahead + n)) for table in (LEDGER, EVENTS)
                       for n in (1, 2)]
    assert partitions_ensure(months_ahead=ahead + 2) == []


def test_a_row_of_a_month_without_a_partition_lands_in_the_default_one_and_keeps_that_month_there(member):
    far = date(2040, 6, 1)
    pin(member.account, instant(far))
    entry = credits_debit(account_id=member.account.pk, amount=D("1.00")).entry
    assert home_of(LEDGER, entry.pk) == f"{LEDGER}_default"
    with pytest.raises(IntegrityError, match="default partition"), transaction.atomic():
        partition_create(LEDGER, far)
    assert ledger_verify(account=member.account).ok


# --- detaching old months -----------------------------------------------------------------------------------


def _detach_through(month: date, now: datetime, **kwargs: object) -> list:
    """Detaches the months of both tables up to ``month`` (usage events first: they name ledger rows)."""
    done = []
    for table in (EVENTS, LEDGER):
        while partition_months(table)[0] <= month:
            done.append(partition_detach(table, now=now, **kwargs))
    return done


def test_old_months_detach_with_their_totals_and_keys_and_the_ledger_still_verifies(platform, member, other_member):
    record(platform, member.account, "r-1", "3.00")
    record(platform, member.account, "r-2", "0.50")
    credits_debit(account_id=other_member.account.pk, amount=D("5.00"), idempotency_key="k-1")
    later = month_after(THIS_MONTH, 1)
    for account in (member.account, other_member.account):
        pin(account, instant(later))
        credits_grant(account_id=account.pk, amount=D("10.00"), idempotency_key="k-later")
    now = instant(month_after(THIS_MONTH, 2))

    done = _detach_through(THIS_MONTH, now)

    assert [(d.table, d.month, d.rows) for d in done] == [(EVENTS, THIS_MONTH, 2), (LEDGER, THIS_MONTH, 5)]
    assert partition_months(LEDGER)[0] == later and partition_months(EVENTS)[0] == later
    archived = ArchivedTotals.objects.get(account=member.account)
    assert (archived.through_sequence, archived.balance, archived.usage_cost) == (3, D("96.50"), D("3.50"))
    assert archived.counts == {"add": 1, "subtract": 2}
    assert not UsageKey.objects.filter(account_id=member.account.pk).exists()
    assert not LedgerKey.objects.filter(account_id=other_member.account.pk, idempotency_key="k-1").exists()
    assert LedgerKey.objects.filter(idempotency_key="k-later").count() == 2
    for account in (member.account, other_member.account):
        assert ledger_verify(account=account).ok
        assert LedgerEntry.objects.filter(account_id=account.pk).count() == 1
    # the history goes on after the detached months
    credits_debit(account_id=member.account.pk, amount=D("1.00"))
    assert ledger_verify(account=member.account).ok
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {partition_name(LEDGER, THIS_MONTH)}")  # a table of its own now
        assert cursor.fetchone()[0] == 5


def test_a_month_named_by_rows_of_later_months_is_kept_unless_allowed(member):
    spent = credits_debit(account_id=member.account.pk, amount=D("20.00")).entry
    pin(member.account, instant(month_after(THIS_MONTH, 1)))
    credits_refund(account_id=member.account.pk, amount=D("5.00"), refund_of_id=spent.pk)
    check_deferred()  # as the refund's commit does
    now = instant(month_after(THIS_MONTH, 2))
    with pytest.raises(HistoryError) as refused:
        partition_detach(LEDGER, now=now)
    assert refused.value.details == {"references": {f"{LEDGER}.refund_of_id": 1}}
    assert partition_months(LEDGER)[0] == THIS_MONTH
    assert partition_detach(LEDGER, now=now, allow_references=True).rows == 2
    assert ledger_verify(account=member.account).ok


def test_the_current_month_is_never_detached(member):
    with pytest.raises(HistoryError, match="not over"):
        partition_detach(LEDGER)
    assert partition_months(LEDGER)[0] == THIS_MONTH


def test_the_command_lists_creates_and_detaches(capsys):
    call_command("partitions", "list")
    listed = capsys.readouterr().out
    assert partition_name(LEDGER, THIS_MONTH) in listed and f"{EVENTS}_default" in listed
    call_command("partitions", "ensure", "--ahead", "5")
    assert f"created {partition_name(LEDGER, month_after(THIS_MONTH, 5))}" in capsys.readouterr().out
    call_command("partitions", "detach", "--before", f"{THIS_MONTH:%Y-%m}")  # nothing older: nothing to do
    assert capsys.readouterr().out == ""
    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("partitions", "detach", "--before", "2026-13")
    with pytest.raises(CommandError, match="not over"):
        call_command("partitions", "detach", "--before", f"{month_after(THIS_MONTH, 1):%Y-%m}")
