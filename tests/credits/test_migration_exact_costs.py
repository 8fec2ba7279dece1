"""Migrations 0005/0006 on a database that already holds usage, holds and client-keyed rows: the events' charged
amounts, the keys moved into their namespaces, and every invariant after. (0005 rewrites the usage table; its
data step is 0006, its own transaction, or the foreign-key checks of the rewritten rows would be left pending.)"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from credits.models import CreditAccount
from tests.credits.test_ledger_invariants_hypothesis import assert_ledger_invariants

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
BEFORE = [("credits", "0004_hold_request_id")]


def _migrate(targets) -> None:  # noqa: ANN001
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())


def test_existing_rows_are_carried_over(platform):
    _migrate(BEFORE)
    try:
        old = MigrationExecutor(connection).loader.project_state(BEFORE).apps
        Account = old.get_model("credits", "CreditAccount")
        Entry = old.get_model("credits", "LedgerEntry")
        Hold = old.get_model("credits", "Hold")
        Event = old.get_model("credits", "UsageEvent")
        now = timezone.now()
        account = Account.objects.get(platform_id=platform.pk, user=None)  # the platform's own, no rows yet
        Account.objects.filter(pk=account.pk).update(balance=D("8"), reserved=D("2"), last_sequence=5, count_add=1,
                                                     count_subtract=1, count_adjustment=1, count_reserve=2,
                                                     last_entry_at=now)
        common = {"account": account, "platform_id": platform.pk, "status": "completed", "description": "",
                  "reference": "", "metadata": {}, "request_hash": "", "created_at": now}

        def row(seq: int, kind: str, balance: str, reserved: str, key: str, after: tuple, **extra):  # noqa: ANN003
            return Entry.objects.create(sequence=seq, transaction_type=kind, balance_delta=D(balance),
                                        reserved_delta=D(reserved), balance_after=D(after[0]),
                                        reserved_after=D(after[1]), idempotency_key=key, **common, **extra)

        row(1, "add", "11", "0", "demo-welcome", ("11", "0"))
        debit = row(2, "subtract", "-1", "0", "usage:r-1", ("10", "0"))
        row(3, "adjustment", "-2", "0", "period:x:1", ("8", "0"))  # a client's key that looks derived
        held, clash = uuid.uuid4(), uuid.uuid4()
        Hold.objects.create(id=held, account=account, amount=D("1"), request_id="h-1", metadata={},
                            expires_at=now, status="active")
        row(4, "reserve", "0", "1", "h-1", ("8", "1"), hold_id=held)
        Hold.objects.create(id=clash, account=account, amount=D("1"), request_id="r-1", metadata={},
                            expires_at=now, status="active")
        row(5, "reserve", "0", "1", "r-1", ("8", "2"), hold_id=clash)  # the collision of old: usage r-1 too
        Event.objects.create(account=account, platform_id=platform.pk, request_id="r-1", endpoint="/x", model="",
                             cost=D("1"), priced_by="amount", success=True, description="", metadata={},
                             ledger_entry=debit, request_hash="", occurred_at=now, recorded_at=now)
        Event.objects.create(account=account, platform_id=platform.pk, request_id="f-1", endpoint="/x", model="",
                             cost=D("0"), priced_by="amount", success=False, description="", metadata={},
                             request_hash="", occurred_at=now, recorded_at=now)
    finally:
        _migrate(None)

    keys = dict(connection.cursor().execute(
        "SELECT sequence, idempotency_key FROM credits_ledger_entry WHERE account_id = %s", [account.pk]
    ).fetchall())
    assert keys == {1: "demo-welcome", 2: "usage:r-1", 3: "client:period:x:1", 4: "usage:h-1", 5: "r-1"}
    charged = dict(connection.cursor().execute(
        "SELECT request_id, charged FROM credits_usageevent WHERE account_id = %s", [account.pk]
    ).fetchall())
    assert charged == {"r-1": D("1"), "f-1": D("0")}
    migrated = CreditAccount.objects.get(pk=account.pk)
    assert migrated.carried_remainder == 0
    assert_ledger_invariants(migrated)


def test_the_data_step_leaves_exact_events_as_they_are(platform, member, owner):
    """Run again (over events recorded since 0005, with costs finer than a quantum), it changes nothing."""
    from credits.models import ModelPrice, UsageEvent
    from credits.services import UsageInput, usage_record

    ModelPrice.objects.create(platform=platform, model="m", input_per_million=D("0.40"), output_per_million=0,
                              effective_from=timezone.now())
    for i in range(5):
        usage_record(platform=platform, usage=UsageInput(account_id=member.account.id, request_id=f"x-{i}",
                                                         endpoint="/e", model="m", input_tokens=3))
    before = sorted(UsageEvent.objects.values_list("request_id", "cost", "charged"))
    _migrate([("credits", "0005_exact_costs_and_key_namespaces")])
    _migrate(None)
    assert sorted(UsageEvent.objects.values_list("request_id", "cost", "charged")) == before
    assert_ledger_invariants(CreditAccount.objects.get(pk=member.account.pk))
