"""GET /api/billing/account/: the ibl.ai credit account of the caller, or with ?platform_key= the platform's."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from accounts.services import api_token_issue
from accounts.models import Membership, Role
from credits.models import CreditAccount, LedgerEntry
from credits.selectors import account_for
from credits.services import credits_debit, credits_grant, hold_create
from tests.api_helpers import ACCOUNT_URL, assert_money, assert_utc, db_snapshot, error_of, invalid_field, iso_z
from tests.conftest import client_for, make_member
from tests.payments.recharge_support import auto_recharge_set

pytestmark = pytest.mark.django_db

ACCOUNT_FIELDS = {
    # the ibl.ai contract
    "has_credits",
    "account_id",
    "available_credits",
    "current_plan",
    "previous_plan",
    "free_trial",
    "auto_recharge_enabled",
    "auto_recharge_threshold_usd",
    "auto_recharge_amount_usd",
    "auto_recharge_spending_limit_usd",
    "auto_recharge_last_triggered_at",
    "can_use_auto_recharge",
    "has_payment_method",
    "pricing_table",
    "platform_key",
    # the ledger's exact figures
    "balance",
    "reserved",
    "carried_remainder",
    "currency",
    "is_platform_account",
    "last_updated",
}


def get_account(client, **params):  # noqa: ANN001, ANN003, ANN201
    return client.get(ACCOUNT_URL, params)


def test_new_account_has_every_field_with_free_trial_defaults(platform):
    fresh = make_member(platform, "nora")
    response = get_account(client_for(fresh))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == ACCOUNT_FIELDS
    account = CreditAccount.objects.get(platform=platform, user=fresh.user)
    assert body == {
        "has_credits": False,
        "account_id": str(account.id),
        "available_credits": "0.00",
        "balance": "0.00",
        "reserved": "0.00",
        "carried_remainder": "0.00",
        "currency": "USD",
        "current_plan": "free_trial",
        "previous_plan": None,
        "free_trial": True,
        "auto_recharge_enabled": False,
        "auto_recharge_threshold_usd": None,
        "auto_recharge_amount_usd": None,
        "auto_recharge_spending_limit_usd": None,
        "auto_recharge_last_triggered_at": None,
        "can_use_auto_recharge": False,
        "has_payment_method": False,
        "pricing_table": {"plans": []},  # the platform sells no plan yet
        "platform_key": "acme",
        "is_platform_account": False,
        "last_updated": None,
    }
    assert LedgerEntry.objects.filter(account=account).count() == 0


def test_account_with_credits_reports_balance_and_has_credits(member):
    response = get_account(client_for(member))
    assert response.status_code == 200
    body = response.json()
    assert body["account_id"] == str(member.account.id)
    assert body["has_credits"] is True
    assert body["available_credits"] == "100.00"
    assert body["balance"] == "100.00"
    assert body["reserved"] == "0.00"
    last = LedgerEntry.objects.filter(account=member.account).order_by("-sequence").first()
    assert assert_utc(body["last_updated"]) == last.created_at
    assert body["last_updated"] == iso_z(last.created_at)


def test_has_credits_is_false_again_once_everything_is_spent(member):
    credits_debit(account_id=member.account.id, amount=Decimal("100"), description="all of it")
    body = get_account(client_for(member)).json()
    assert body["has_credits"] is False
    assert body["available_credits"] == "0.00"
    assert CreditAccount.objects.get(pk=member.account.id).balance == Decimal("0")


@pytest.mark.parametrize(
    ("grant", "expected"),
    [
        ("42.5", "42.50"),
        ("3", "3.00"),
        ("0.000125", "0.000125"),
        ("0.1", "0.10"),
        ("1000000000", "1000000000.00"),
        ("12.345600", "12.3456"),
    ],
)
def test_available_credits_is_a_decimal_string_with_at_least_two_places(platform, grant, expected):
    fresh = make_member(platform, "nora")
    credits_grant(account_id=fresh.account.id, amount=Decimal(grant), description="grant")
    body = get_account(client_for(fresh)).json()
    assert body["available_credits"] == expected
    assert body["balance"] == expected
    assert_money(body["available_credits"])
    assert Decimal(body["available_credits"]) == CreditAccount.objects.get(pk=fresh.account.id).available
    assert body["has_credits"] is True


def test_reserved_credits_are_not_available(member):
    hold_create(account_id=member.account.id, amount=Decimal("30.25"))
    body = get_account(client_for(member)).json()
    assert body["balance"] == "100.00"
    assert body["reserved"] == "30.25"
    assert body["available_credits"] == "69.75"
    assert body["has_credits"] is True

    hold_create(account_id=member.account.id, amount=Decimal("69.75"))
    body = get_account(client_for(member)).json()
    assert body["available_credits"] == "0.00"
    assert body["reserved"] == "100.00"
    assert body["has_credits"] is False


def test_auto_recharge_settings_are_money_strings(member):
    auto_recharge_set(member.account.id, enabled=True, threshold_usd=Decimal("5"), amount_usd=Decimal("25.5"),
                      spending_limit_usd=Decimal("100.000001"))
    body = get_account(client_for(member)).json()
    assert body["auto_recharge_enabled"] is True
    assert body["auto_recharge_threshold_usd"] == "5.00"
    assert body["auto_recharge_amount_usd"] == "25.50"
    assert body["auto_recharge_spending_limit_usd"] == "100.000001"
    assert body["auto_recharge_last_triggered_at"] is None


def test_account_is_created_on_first_request_for_a_membership_without_one(platform):
    user = get_user_model().objects.create_user("late")
    Membership.objects.create(platform=platform, user=user, role=Role.MEMBER)
    token = api_token_issue(user=user)
    assert account_for(platform=platform, user=user) is None

    response = get_account(client_for(token=token.key))
    assert response.status_code == 200
    account = CreditAccount.objects.get(platform=platform, user=user)
    assert response.json()["account_id"] == str(account.id)
    assert response.json()["available_credits"] == "0.00"
    # a second request finds the same account instead of creating another
    assert get_account(client_for(token=token.key)).json()["account_id"] == str(account.id)
    assert CreditAccount.objects.filter(platform=platform, user=user).count() == 1


def test_each_member_sees_only_their_own_account(member, other_member):
    mine = get_account(client_for(member)).json()
    theirs = get_account(client_for(other_member)).json()
    assert mine["account_id"] == str(member.account.id)
    assert theirs["account_id"] == str(other_member.account.id)
    assert (mine["available_credits"], theirs["available_credits"]) == ("100.00", "50.00")


# --- ?platform_key= ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_and_admin_see_the_platform_account_with_platform_key(request, platform, member, role):
    caller = request.getfixturevalue(role)
    platform_account = CreditAccount.objects.get(platform=platform, user__isnull=True)
    credits_grant(account_id=platform_account.id, amount=Decimal("7.5"), description="platform pool")

    response = get_account(client_for(caller), platform_key="acme")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == ACCOUNT_FIELDS
    assert body["account_id"] == str(platform_account.id)
    assert body["is_platform_account"] is True
    assert body["platform_key"] == "acme"
    assert body["available_credits"] == "7.50"
    assert body["has_credits"] is True
    # without the parameter the caller gets their own (empty) account, not the platform's
    own = get_account(client_for(caller)).json()
    assert own["account_id"] == str(caller.account.id)
    assert own["is_platform_account"] is False


def test_member_cannot_use_platform_key(member):
    before = db_snapshot()
    response = get_account(client_for(member), platform_key="acme")
    error = error_of(response, 403, "admin_required")
    assert "account_id" not in response.json()
    assert error["details"] == {}
    assert db_snapshot() == before


def test_admin_of_another_platform_cannot_use_platform_key(outsider, platform):
    response = get_account(client_for(outsider), platform_key="acme")
    error_of(response, 403)
    assert str(CreditAccount.objects.get(platform=platform, user__isnull=True).id) not in response.content.decode()


@pytest.mark.parametrize("role", ["member", "admin"])
def test_unknown_platform_key_is_403_not_404_for_non_operators(request, role):
    caller = request.getfixturevalue(role)
    error_of(get_account(client_for(caller), platform_key="no-such-platform"), 403)


def test_operator_sees_any_platform_account_and_learns_unknown_keys(platform, other_platform):
    operator = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    token = api_token_issue(user=operator).key
    client = client_for(token=token, platform_key="acme")

    body = get_account(client, platform_key="acme").json()
    assert body["account_id"] == str(CreditAccount.objects.get(platform=platform, user__isnull=True).id)
    other = get_account(client, platform_key="globex").json()
    assert other["account_id"] == str(CreditAccount.objects.get(platform=other_platform, user__isnull=True).id)
    assert other["platform_key"] == "globex"
    error_of(get_account(client, platform_key="no-such-platform"), 404, "platform_not_found")


@pytest.mark.parametrize("value", ["x" * 64, "a" * 1000])
def test_overlong_platform_key_is_400(admin, value):
    invalid_field(get_account(client_for(admin), platform_key=value), "platform_key")


def test_empty_platform_key_means_no_platform_key(admin):
    # Query-string semantics, as for every filter: an empty value is the same as leaving it out.
    body = get_account(client_for(admin), platform_key="").json()
    assert body["account_id"] == str(admin.account.id)
    assert body["is_platform_account"] is False
