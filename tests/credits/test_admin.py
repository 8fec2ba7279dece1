"""Django admin: browsable, searchable; ledger read-only; adjustments go through the service."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts.models import Membership, Role
from credits.models import CreditAccount, LedgerEntry, TransactionType
from credits.verification import ledger_verify
from tests.payments.recharge_support import auto_recharge_of, auto_recharge_set


@pytest.mark.parametrize(
    "url",
    [
        "admin:accounts_platform_changelist",
        "admin:accounts_membership_changelist",
        "admin:credits_creditaccount_changelist",
        "admin:credits_ledgerentry_changelist",
        "admin:credits_hold_changelist",
    ],
)
def test_changelists_render_with_search_and_filters(browser, member, url):
    response = browser.get(reverse(url), {"q": "mia"})
    assert response.status_code == 200
    assert b"mia" in response.content or url.endswith("platform_changelist")


def test_ledger_filter_by_type(browser, member):
    response = browser.get(reverse("admin:credits_ledgerentry_changelist"), {"transaction_type__exact": "add"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == LedgerEntry.objects.filter(transaction_type="add").count()


def test_account_page_shows_balances_and_adjust_link(browser, member):
    response = browser.get(reverse("admin:credits_creditaccount_change", args=[member.account.pk]))
    assert response.status_code == 200
    assert reverse("admin:credits_creditaccount_adjust", args=[member.account.pk]).encode() in response.content
    assert b"test funds" in response.content


def test_account_page_shows_the_carried_remainder(browser, member):
    CreditAccount.objects.filter(pk=member.account.pk).update(carried_remainder=Decimal("0.0000004"))
    response = browser.get(reverse("admin:credits_creditaccount_change", args=[member.account.pk]))
    assert b"carried remainder" in response.content.lower()
    assert b"0.0000004" in response.content


def test_balance_cannot_be_edited_on_the_account_page(browser, member):
    url = reverse("admin:credits_creditaccount_change", args=[member.account.pk])
    response = browser.post(url, {"balance": "999999", "reserved": "0", "entries-TOTAL_FORMS": "0", "entries-INITIAL_FORMS": "0"})
    assert response.status_code in (200, 302)
    member.account.refresh_from_db()
    assert member.account.balance == Decimal("100")
    assert ledger_verify(account=member.account).ok


def test_ledger_entries_are_read_only(browser, member):
    entry = LedgerEntry.objects.filter(account=member.account).first()
    change_url = reverse("admin:credits_ledgerentry_change", args=[entry.pk])
    assert browser.get(change_url).status_code == 200  # viewable
    assert browser.post(change_url, {"description": "edited"}).status_code == 403
    assert browser.post(reverse("admin:credits_ledgerentry_delete", args=[entry.pk])).status_code == 403
    assert browser.get(reverse("admin:credits_ledgerentry_add")).status_code == 403
    entry.refresh_from_db()
    assert entry.description == "test funds"


def test_manual_adjustment_from_the_account_page_writes_a_ledger_row_with_the_admin(browser, operator, member):
    url = reverse("admin:credits_creditaccount_adjust", args=[member.account.pk])
    assert browser.get(url).status_code == 200
    response = browser.post(url, {"amount": "-12.5", "description": "goodwill correction", "reference": "T-1"})
    assert response.status_code == 302
    entry = LedgerEntry.objects.filter(account=member.account).order_by("-sequence").first()
    assert entry.transaction_type == TransactionType.ADJUSTMENT
    assert entry.balance_delta == Decimal("-12.5")
    assert entry.actor == operator
    assert entry.reference == "T-1"
    member.account.refresh_from_db()
    assert member.account.balance == Decimal("87.5")
    assert ledger_verify(account=member.account).ok


@pytest.mark.parametrize(
    ("amount", "description"),
    [("0", "x"), ("-100.01", "x"), ("abc", "x"), ("1.0000001", "x"), ("1000000001", "x"),
     # the API's input rules hold in the admin too
     ("٥", "x"), ("５", "x"), ("+5", "x"), (" 5.00 ", "x"), ("1E+1", "x"), ("1_0", "x"), ("5", "del\x7fchar"),
     ("5", "\x85"), ("5", "   ")],
)
def test_bad_adjustment_in_admin_writes_nothing(browser, member, amount, description):
    url = reverse("admin:credits_creditaccount_adjust", args=[member.account.pk])
    before = LedgerEntry.objects.count()
    response = browser.post(url, {"amount": amount, "description": description})
    assert response.status_code == 200  # the form again, with the error
    assert response.context["form"].errors
    assert LedgerEntry.objects.count() == before


def test_staff_without_permission_cannot_adjust(member):
    staff = get_user_model().objects.create_user("staffer", password="pw-for-tests-only", is_staff=True)
    client = Client()
    client.force_login(staff)
    response = client.post(
        reverse("admin:credits_creditaccount_adjust", args=[member.account.pk]),
        {"amount": "5", "description": "x"},
    )
    assert response.status_code == 403
    assert LedgerEntry.objects.filter(account=member.account).count() == 1


def test_platform_created_in_admin_gets_its_own_account(browser):
    response = browser.post(
        reverse("admin:accounts_platform_add"),
        {"platform_key": "newco", "name": "New Co", "time_zone": "UTC", "memberships-TOTAL_FORMS": "0",
         "memberships-INITIAL_FORMS": "0"},
    )
    assert response.status_code == 302, response.content[:2000]
    assert CreditAccount.objects.filter(platform__platform_key="newco", user=None).count() == 1


def test_membership_added_in_admin_gets_a_credit_account(browser, platform):
    user = get_user_model().objects.create_user("newbie")
    response = browser.post(
        reverse("admin:accounts_membership_add"), {"platform": platform.pk, "user": user.pk, "role": Role.MEMBER}
    )
    assert response.status_code == 302
    assert Membership.objects.filter(user=user, platform=platform).exists()
    assert CreditAccount.objects.filter(platform=platform, user=user).count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("auto_recharge_threshold_usd", "٥"), ("auto_recharge_threshold_usd", "+5"), ("auto_recharge_amount_usd", "1E+1"),
     ("auto_recharge_spending_limit_usd", " 5 ")],
)
def test_account_settings_in_admin_follow_the_api_rules(browser, member, field, value):
    # The auto-recharge settings are payments' (AutoRechargeSettings), edited on their own admin page.
    auto_recharge_set(member.account.pk)
    name = field.removeprefix("auto_recharge_")
    url = reverse("admin:payments_autorechargesettings_change", args=[member.account.pk])
    data = {"threshold_usd": "", "amount_usd": "", "spending_limit_usd": "", name: value}
    response = browser.post(url, data)
    assert response.status_code == 200, response.status_code  # the form again, with the error
    assert name in response.context["adminform"].form.errors
    assert getattr(auto_recharge_of(member.account.pk), name) is None
