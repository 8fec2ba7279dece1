"""Migrations payments 0010 / credits 0008: the auto-recharge settings move from the credit account to
``AutoRechargeSettings`` (only accounts with anything set), ``low_balance_threshold`` follows them, and failed
recharges get their ``failure_reason`` from the ``last_error`` prefixes the code used to write; both reversible."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from credits.models import CreditAccount
from payments.recharge_models import AutoRechargeSettings, Recharge, RechargeFailure
from tests.conftest import make_member

D = Decimal
BEFORE = [("payments", "0009_creem_refund_id_index"), ("credits", "0007_low_balance_threshold")]
pytestmark = pytest.mark.django_db(transaction=True)


def _migrate(targets) -> MigrationExecutor:  # noqa: ANN001
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return MigrationExecutor(connection)


def _old_models():  # noqa: ANN202
    apps = MigrationExecutor(connection).loader.project_state(BEFORE).apps
    return apps.get_model("credits", "CreditAccount"), apps.get_model("payments", "Recharge")


OLD_ERRORS = {
    "cancelled: payment method removed": (RechargeFailure.PAYMENT_METHOD_REMOVED, "payment method removed"),
    "cancelled: auto-recharge is off": (RechargeFailure.CANCELLED, "auto-recharge is off"),
    "gave up: 10 sends failed at the provider": (RechargeFailure.GAVE_UP, "10 sends failed at the provider"),
    "Your card was declined.": (RechargeFailure.DECLINED, "Your card was declined."),
}


def test_settings_and_failure_reasons_move_to_columns_and_back(platform):  # noqa: ANN001
    on, off, incomplete, unset = (make_member(platform, name).account for name in ("ada", "bob", "cy", "dee"))
    _migrate(BEFORE)
    try:
        Account, OldRecharge = _old_models()
        Account.objects.filter(pk=on.pk).update(
            auto_recharge_enabled=True, auto_recharge_threshold_usd=D("5"), auto_recharge_amount_usd=D("20"),
            auto_recharge_spending_limit_usd=D("100"), low_balance_threshold=D("5"))
        Account.objects.filter(pk=off.pk).update(auto_recharge_threshold_usd=D("7"), auto_recharge_amount_usd=D("20"))
        Account.objects.filter(pk=incomplete.pk).update(  # enabled without an amount: it never charged anything
            auto_recharge_enabled=True, auto_recharge_threshold_usd=D("9"), low_balance_threshold=D("9"))
        for n, error in enumerate(OLD_ERRORS):
            OldRecharge.objects.create(
                account_id=on.pk, status="failed", amount_usd=D(20), credits=D(20), provider_customer_id="cus",
                provider_payment_method_id="pm", last_error=error, attempts=n)
        OldRecharge.objects.create(account_id=off.pk, status="pending", amount_usd=D(20), credits=D(20),
                                   provider_customer_id="cus", provider_payment_method_id="pm", last_error="timeout")
    finally:
        _migrate(None)

    rows = {s.account_id: s for s in AutoRechargeSettings.objects.all()}
    assert set(rows) == {on.pk, off.pk, incomplete.pk}  # unset: no row
    assert (rows[on.pk].enabled, rows[on.pk].threshold_usd, rows[on.pk].amount_usd,
            rows[on.pk].spending_limit_usd) == (True, D("5"), D("20"), D("100"))
    assert (rows[off.pk].enabled, rows[off.pk].threshold_usd) == (False, D("7"))
    assert (rows[incomplete.pk].enabled, rows[incomplete.pk].threshold_usd) == (False, D("9"))
    thresholds = dict(CreditAccount.objects.filter(pk__in=[on.pk, off.pk, incomplete.pk, unset.pk])
                      .values_list("pk", "low_balance_threshold"))
    assert thresholds == {on.pk: D("5"), off.pk: None, incomplete.pk: None, unset.pk: None}
    failed = {r.attempts: (r.failure_reason, r.last_error) for r in Recharge.objects.filter(status="failed")}
    assert failed == dict(enumerate(OLD_ERRORS.values()))
    assert Recharge.objects.get(status="pending").failure_reason == ""

    _migrate(BEFORE)  # and back: the columns and prefixes again
    try:
        Account, OldRecharge = _old_models()
        old_on = Account.objects.get(pk=on.pk)
        assert (old_on.auto_recharge_enabled, old_on.auto_recharge_threshold_usd,
                old_on.auto_recharge_spending_limit_usd) == (True, D("5"), D("100"))
        assert sorted(OldRecharge.objects.filter(status="failed").values_list("last_error", flat=True)) == sorted(
            OLD_ERRORS)
    finally:
        _migrate(None)
