"""PlanCreditPeriod in the Django admin: read-only, filterable, searchable by subscription and invoice."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from payments.models import PlanCreditPeriod
from subscriptions.models import Subscription
from tests.payments import stripe_subscriptions
from tests.payments.stripe_subscriptions import DAY, T0
from tests.payments.test_subscription_webhooks import pay, plan_of

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe fixture

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:payments_plancreditperiod_changelist"


@pytest.fixture
def browser(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only"))
    return client


@pytest.fixture
def periods(stripe_billing, platform, member):
    plan = plan_of(platform)
    pay(member.account, plan, T0, T0 + 31 * DAY, invoice_id="in_admin_1", payment_intent="pi_admin_1")
    pay(member.account, plan, T0 + 31 * DAY, T0 + 59 * DAY, invoice_id="in_admin_2")
    return list(PlanCreditPeriod.objects.order_by("period_start"))


def listed(browser: Client, **query: str) -> bytes:
    response = browser.get(reverse(CHANGELIST), query)
    assert response.status_code == 200, query
    return response.content


def test_the_changelist_filters_and_searches(browser, periods):
    first, second = periods
    subscription = Subscription.objects.get()
    for query in [{}, {"state": "open"}, {"state": "closed"}, {"state": "upgraded"}, {"state": "refunded"},
                  {"state": "shortfall"}, {"subscription__provider__exact": "stripe"},
                  {"plan__rollover_policy__exact": "none"}, {"plan__id__exact": str(first.plan_id)},
                  {"q": "in_admin_1"}, {"q": "pi_admin_1"}, {"q": "sub_test_w"}, {"q": str(subscription.pk)}]:
        listed(browser, **query)
    assert reverse("admin:payments_plancreditperiod_change", args=[first.pk]).encode() in listed(browser)

    def shown(**query: str) -> set[int]:
        content = listed(browser, **query)
        return {p.pk for p in periods
                if reverse("admin:payments_plancreditperiod_change", args=[p.pk]).encode() in content}

    assert shown(q="in_admin_1") == {first.pk}
    assert shown(q="in_admin_2") == {second.pk}
    assert shown(q="sub_test_w") == {first.pk, second.pk}
    assert shown(q=str(subscription.pk)) == {first.pk, second.pk}
    assert shown(state="closed") == {first.pk}
    assert shown(state="open") == {second.pk}


def test_periods_are_read_only(browser, periods):
    first = periods[0]
    assert browser.get(reverse("admin:payments_plancreditperiod_add")).status_code == 403
    assert browser.post(reverse("admin:payments_plancreditperiod_delete", args=[first.pk]),
                        {"post": "yes"}).status_code == 403
    assert browser.get(reverse("admin:payments_plancreditperiod_change", args=[first.pk])).status_code == 200
    browser.post(reverse("admin:payments_plancreditperiod_change", args=[first.pk]), {"granted": "999"})
    assert PlanCreditPeriod.objects.get(pk=first.pk).granted == Decimal(100)
