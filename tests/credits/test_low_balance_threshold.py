"""``CreditAccount.low_balance_threshold``: a debit that leaves ``available`` below it calls
``settings.CREDITS_LOW_BALANCE_HOOK`` (read by the debit statement itself, one query); set by
``low_balance_threshold_set`` under the account's lock; migration 0007 fills it from the auto-recharge settings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

from credits.errors import AccountNotFound
from credits.locks import account_lock
from credits.models import CreditAccount
from credits.services import credits_debit, low_balance_threshold_set
from credits.services.usage_batch import usage_record_batch
from credits.services.usage import UsageInput
from tests.conftest import make_member

D = Decimal


@pytest.fixture
def calls(monkeypatch):
    seen: list = []
    monkeypatch.setattr("credits.ledger.low_balance_hook", lambda: seen.append)
    return seen


def _set(account_id, threshold) -> None:  # noqa: ANN001
    with transaction.atomic():
        account_lock(account_id=account_id)
        low_balance_threshold_set(account_id=account_id, threshold=threshold)


@pytest.mark.django_db
def test_a_debit_below_the_threshold_calls_the_hook(platform, calls):
    account = make_member(platform, "ada", credits="10").account
    credits_debit(account_id=account.id, amount=D("1"))
    _set(account.id, D("8.5"))
    credits_debit(account_id=account.id, amount=D("0.5"))  # 8.50 left: not below
    assert calls == []
    credits_debit(account_id=account.id, amount=D("0.01"))
    assert calls == [account.id]

    _set(account.id, None)
    credits_debit(account_id=account.id, amount=D("1"))
    assert calls == [account.id]
    assert CreditAccount.objects.get(pk=account.id).low_balance_threshold is None


@pytest.mark.django_db
def test_a_batch_calls_the_hook_once_per_account(platform, calls):
    account = make_member(platform, "ada", credits="10").account
    _set(account.id, D("9.5"))
    events = [UsageInput(account_id=account.id, request_id=f"r{i}", endpoint="/x", amount=D("0.25"))
              for i in range(3)]
    usage_record_batch(platform=platform, events=events)
    assert calls == [account.id]


@pytest.mark.django_db(transaction=True)  # outside any transaction, as a request runs
def test_setting_it_needs_the_callers_transaction(platform):
    account = make_member(platform, "ada").account
    with pytest.raises(RuntimeError):
        low_balance_threshold_set(account_id=account.id, threshold=D("1"))
    with transaction.atomic(), pytest.raises(ValueError):
        low_balance_threshold_set(account_id=account.id, threshold=D("-1"))
    with transaction.atomic(), pytest.raises(AccountNotFound):
        low_balance_threshold_set(account_id="00000000-0000-0000-0000-000000000000", threshold=D("1"))


BEFORE = [("credits", "0006_exact_costs_and_key_namespaces_data")]


def _migrate(targets) -> None:  # noqa: ANN001
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_it_from_enabled_auto_recharge(platform):
    on, off, unset = (make_member(platform, name).account for name in ("ada", "bob", "cy"))
    _migrate(BEFORE)
    try:
        Account = MigrationExecutor(connection).loader.project_state(BEFORE).apps.get_model("credits", "CreditAccount")
        Account.objects.filter(pk=on.pk).update(auto_recharge_enabled=True, auto_recharge_threshold_usd=D("5"),
                                                auto_recharge_amount_usd=D("20"))
        Account.objects.filter(pk=off.pk).update(auto_recharge_enabled=False, auto_recharge_threshold_usd=D("7"),
                                                 auto_recharge_amount_usd=D("20"))
    finally:
        _migrate(None)

    thresholds = dict(CreditAccount.objects.filter(pk__in=[on.pk, off.pk, unset.pk])
                      .values_list("pk", "low_balance_threshold"))
    assert thresholds == {on.pk: D("5"), off.pk: None, unset.pk: None}
