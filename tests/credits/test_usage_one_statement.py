"""usage_record's one-statement path (credits.services.usage._record_charged_at_once): outside a transaction, a
charged event recorded for the first time is one statement. It must write what the general path writes, and leave
every other case to the general path with nothing written. These tests run in autocommit (transaction=True): the
other usage tests run inside a test transaction, where only the general path runs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from accounts.services import platform_create
from credits.errors import AccountNotFound, IdempotencyConflict, InsufficientCredits
from credits.models import CreditAccount, LedgerEntry, ModelPrice, UsageEvent, UsageRollup
from credits.services import UsageInput, credits_grant, usage_record
from credits.services import usage as usage_service
from tests.conftest import make_member
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


@pytest.fixture
def accounts(platform):
    """Two funded accounts of one platform: one for each path."""
    pair = [make_member(platform, name, credits="10").account for name in ("ada", "bob")]
    return platform, pair


def record(platform, account, request_id: str = "req-1", **fields):
    body = {"endpoint": "/v1/chat/completions", "amount": D("1.25")} | fields
    return usage_record(platform=platform, usage=UsageInput(account_id=account.id, request_id=request_id, **body))


def general(platform, account, request_id: str = "req-1", **fields):
    with transaction.atomic():  # inside a transaction only the general path runs
        return record(platform, account, request_id, **fields)


def written(account: CreditAccount) -> tuple:
    entries = [{k: v for k, v in model_to_dict(e).items()
                if k not in {"id", "account", "metadata", "created_at", "request_hash"}}
               for e in LedgerEntry.objects.filter(account=account).order_by("sequence")]
    events = [{k: v for k, v in model_to_dict(e).items()
               if k not in {"id", "account", "ledger_entry", "occurred_at", "recorded_at", "request_hash"}}
              for e in UsageEvent.objects.filter(account=account)]
    rollups = [{k: v for k, v in model_to_dict(r).items() if k not in {"id", "account"}}
               for r in UsageRollup.objects.filter(account=account)]
    account.refresh_from_db()
    return entries, events, rollups, account.balance, account.reserved, account.last_sequence


@pytest.mark.parametrize("fields", [
    {},
    {"model": "gpt-test", "amount": None, "input_tokens": 2000, "output_tokens": 1000},
    {"description": "summary", "metadata": {"trace": "t-1"}, "model": "any",
     "occurred_at": datetime(2026, 1, 2, tzinfo=UTC)},
])
def test_writes_what_the_general_path_writes(accounts, fields):
    platform, (fast, slow) = accounts
    ModelPrice.objects.create(platform=platform, model="gpt-test", input_per_million=D(3), output_per_million=D(15),
                              effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    fields = {k: v for k, v in fields.items() if v is not None} | (
        {"amount": None} if "amount" in fields and fields["amount"] is None else {})

    with CaptureQueriesContext(connection) as queries:
        one = record(platform, fast, **fields)
    two = general(platform, slow, **fields)

    assert [q["sql"] for q in queries] == []  # psycopg directly: no BEGIN, no COMMIT, no ORM query
    assert written(fast) == written(slow)
    assert (one.replayed, one.available, one.entry.balance_after) == (two.replayed, two.available,
                                                                      two.entry.balance_after)
    debit = LedgerEntry.objects.get(account=fast, transaction_type="subtract")
    assert one.event.ledger_entry_id == one.entry.id == debit.id
    assert record(platform, fast, **fields).replayed  # the same request hash as the general path would store
    assert_ledger_invariants(fast)


def test_a_replay_and_a_conflict_are_the_general_paths(accounts):
    platform, (account, _) = accounts
    first = record(platform, account)

    again = record(platform, account)
    with pytest.raises(IdempotencyConflict):
        record(platform, account, amount=D(2))

    assert (again.replayed, again.event.id, again.entry.id) == (True, first.event.id, first.entry.id)
    assert LedgerEntry.objects.filter(account=account, transaction_type="subtract").count() == 1


def test_the_request_id_of_a_free_event_is_not_charged_again(accounts):
    platform, (account, _) = accounts
    free = record(platform, account, success=False)

    again = record(platform, account, success=False)
    with pytest.raises(IdempotencyConflict):
        record(platform, account)  # same request_id, charged this time: the event's unique key refuses it

    assert (free.entry, again.replayed) == (None, True)
    assert not LedgerEntry.objects.filter(account=account, transaction_type="subtract").exists()


def test_refusals_write_nothing(accounts):
    platform, (account, _) = accounts
    other_platform, _ = platform_create(platform_key="other", name="Other")
    stranger = make_member(other_platform, "eve", credits="10").account
    before = written(account), written(stranger)

    with pytest.raises(InsufficientCredits):
        record(platform, account, amount=D("10.01"))
    with pytest.raises(AccountNotFound):
        record(platform, stranger)  # an account of another platform

    assert (written(account), written(stranger)) == before


def test_the_low_balance_hook_runs(accounts, settings, monkeypatch):
    platform, (account, _) = accounts
    calls = []
    monkeypatch.setattr("credits.ledger.low_balance_hook", lambda: calls.append)
    CreditAccount.objects.filter(pk=account.pk).update(low_balance_threshold=D("9.5"))

    record(platform, account, "r1", amount=D("0.25"))
    record(platform, account, "r2", amount=D("0.50"))

    assert calls == [account.id]  # only the debit that left it below 9.50


def test_many_events_keep_the_ledger_whole(accounts):
    platform, (account, _) = accounts
    credits_grant(account_id=account.id, amount=D(90))
    for i in range(40):
        record(platform, account, f"r{i}", amount=D("0.125"), endpoint=f"/e{i % 3}")

    assert_ledger_invariants(account)
    assert sum(r.total_requests for r in UsageRollup.objects.filter(account=account)) == 40
    assert usage_service.UsageEvent.objects.filter(account=account).count() == 40


@pytest.mark.parametrize("field", ["endpoint", "model", "description"])
def test_a_value_longer_than_its_column_is_refused_not_cut(accounts, field):
    """The API's validation refuses these first; a direct caller of the service gets the column's error."""
    platform, (account, _) = accounts
    before = written(account)

    with pytest.raises(DataError):
        record(platform, account, **{field: "x" * 501})

    assert written(account) == before
