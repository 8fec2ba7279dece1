"""The ledger is append-only in the database: a trigger (migration credits/0002) refuses every UPDATE and
DELETE of ``credits_ledger_entry``, whether it comes from raw SQL or from the ORM."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.utils import Error as DatabaseError

from credits.models import CreditAccount, LedgerEntry
from credits.services import credits_debit, credits_grant
from tests.conftest import make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants

D = Decimal

COLUMNS = [f.column for f in LedgerEntry._meta.concrete_fields]


@pytest.fixture
def account(platform) -> CreditAccount:  # noqa: ANN001
    account = make_member(platform, "payer").account
    credits_grant(account_id=account.id, amount=D("100"), description="top-up")
    credits_debit(account_id=account.id, amount=D("40"), description="usage")
    return account


def snapshot(account: CreditAccount) -> list[tuple]:
    """Every column of every row of the account, straight from the table."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(COLUMNS)} FROM credits_ledger_entry WHERE account_id = %s ORDER BY sequence",
            [account.id],
        )
        return cursor.fetchall()


def refused(sql: str, params: list) -> DatabaseError:
    """Runs ``sql`` in a savepoint and returns the database error it raised."""
    with pytest.raises(DatabaseError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return raised.value


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE credits_ledger_entry SET balance_delta = 1000, balance_after = 1000 WHERE id = %s",
        "UPDATE credits_ledger_entry SET description = 'edited' WHERE id = %s",
        "UPDATE credits_ledger_entry SET sequence = sequence WHERE id = %s",  # even a no-op update
        "DELETE FROM credits_ledger_entry WHERE id = %s",
    ],
)
def test_raw_update_or_delete_of_one_row_is_refused(account, sql):
    entry = LedgerEntry.objects.get(account=account, sequence=2)
    before = snapshot(account)
    error = refused(sql, [entry.id])
    assert "append-only" in str(error)
    assert snapshot(account) == before
    assert_ledger_invariants(account)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE credits_ledger_entry SET description = 'edited' WHERE account_id = %s",
        "DELETE FROM credits_ledger_entry WHERE account_id = %s",
    ],
)
def test_raw_update_or_delete_of_every_row_is_refused(account, sql):
    before = snapshot(account)
    assert len(before) == 2
    refused(sql, [account.id])
    assert snapshot(account) == before


@pytest.mark.django_db
def test_orm_save_of_an_existing_entry_is_refused(account):
    entry = LedgerEntry.objects.get(account=account, sequence=2)
    before = snapshot(account)
    entry.balance_delta = D("-1")
    entry.balance_after = D("99")
    entry.description = "rewritten"
    with pytest.raises(DatabaseError), transaction.atomic():
        entry.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        entry.save(update_fields=["description"])
    assert snapshot(account) == before


@pytest.mark.django_db
def test_orm_delete_and_queryset_update_or_delete_are_refused(account):
    entry = LedgerEntry.objects.get(account=account, sequence=2)
    before = snapshot(account)
    with pytest.raises(DatabaseError), transaction.atomic():
        entry.delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(account=account).update(description="bulk edit")
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(account=account).delete()
    assert snapshot(account) == before
    assert LedgerEntry.objects.filter(account=account).count() == 2


@pytest.mark.django_db(transaction=True)
def test_refusal_holds_outside_a_test_transaction_and_rows_stay_after_commit(platform):
    """The same refusals in autocommit mode: nothing is rolled back by a surrounding test transaction,
    so the rows being unchanged afterwards is the trigger's doing."""
    account = make_member(platform, "autocommit").account
    credits_grant(account_id=account.id, amount=D("10"))
    before = snapshot(account)
    with pytest.raises(DatabaseError), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE credits_ledger_entry SET balance_after = 0 WHERE account_id = %s", [account.id]
        )
    with pytest.raises(DatabaseError), connection.cursor() as cursor:
        cursor.execute("DELETE FROM credits_ledger_entry WHERE account_id = %s", [account.id])
    with pytest.raises(DatabaseError):
        LedgerEntry.objects.filter(account=account).delete()
    assert snapshot(account) == before
    assert_ledger_invariants(account)
