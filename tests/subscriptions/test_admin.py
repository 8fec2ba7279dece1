"""Django admin: plans created and edited through the services; subscriptions read-only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from subscriptions.models import Plan, Subscription
from tests.subscriptions.conftest import plan_rows, start

pytestmark = pytest.mark.django_db

FORM = {
    "slug": "starter",
    "name": "Starter",
    "description": "",
    "price_monthly": "999",
    "price_yearly": "9990",
    "currency": "USD",
    "credits_included": "100",
    "features": "Chat\n\n  Support  \n",
    "rollover_policy": "none",
    "rollover_cap": "",
    "purchasable": "on",
    "is_active": "on",
    "stripe_price_monthly": "",
    "stripe_price_yearly": "",
    "creem_product_id": "",
    "sort_order": "0",
}


@pytest.fixture
def browser(db) -> Client:
    operator = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(operator)
    return client


def test_adding_a_plan_goes_through_the_service(browser, platform):
    response = browser.post(reverse("admin:subscriptions_plan_add"), FORM | {"platform": platform.pk})
    assert response.status_code == 302, (
        response.context["adminform"].form.errors if response.context else response
    )
    plan = Plan.objects.get()
    assert (plan.platform_id, plan.slug, plan.price_monthly, plan.features) == (
        platform.pk,
        "starter",
        999,
        ["Chat", "Support"],
    )
    assert plan.credits_included == Decimal("100")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rollover_policy": "capped"}, "rollover_cap"),
        ({"rollover_cap": "5"}, "rollover_cap"),
        ({"slug": "Bad Slug"}, "slug"),
        ({"slug": "free_trial"}, "slug"),
        ({"slug": "growth"}, "slug"),  # taken
        ({"price_monthly": "-1"}, "price_monthly"),
        ({"stripe_price_monthly": "prod_x"}, "stripe_price_monthly"),
        ({"stripe_price_monthly": "price_growth_y"}, "stripe_price_monthly"),  # another plan's
        ({"features": "x" * 201}, "features"),
        ({"currency": "EUR"}, "currency"),
    ],
)
def test_a_bad_plan_comes_back_on_the_form(browser, platform, growth, changes, field):
    before = plan_rows()
    response = browser.post(
        reverse("admin:subscriptions_plan_add"), FORM | {"platform": platform.pk} | changes
    )
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert plan_rows() == before


def test_editing_a_plan_goes_through_the_service_and_keeps_its_rules(browser, growth):
    url = reverse("admin:subscriptions_plan_change", args=[growth.pk])
    page = browser.get(url)
    assert page.status_code == 200
    assert b"Priority support" in page.content
    form = FORM | {
        "name": "Growth",
        "price_monthly": "2900",
        "price_yearly": "29000",
        "credits_included": "1000",
        "features": "Priority support",
        "stripe_price_monthly": "price_growth_m",
        "stripe_price_yearly": "price_growth_y",
        "sort_order": "2",
    }
    form.pop("slug")
    before = plan_rows()
    refused = browser.post(url, form | {"price_monthly": "3900"})  # a Stripe-priced cycle, same price id
    assert refused.status_code == 200
    assert "price_monthly" in refused.context["adminform"].form.errors
    assert plan_rows() == before

    done = browser.post(
        url, form | {"price_monthly": "3900", "stripe_price_monthly": "price_new", "is_active": ""}
    )
    assert done.status_code == 302
    growth.refresh_from_db()
    assert (growth.price_monthly, growth.stripe_price_monthly, growth.is_active) == (3900, "price_new", False)
    assert growth.slug == "growth"


def test_plans_cannot_be_deleted(browser, growth):
    assert browser.post(reverse("admin:subscriptions_plan_delete", args=[growth.pk])).status_code == 403
    assert Plan.objects.filter(pk=growth.pk).exists()


def test_subscriptions_are_browsable_and_read_only(browser, member, growth):
    sub = start(member.account, growth, provider_subscription_id="sub_admin")
    listing = browser.get(reverse("admin:subscriptions_subscription_changelist"), {"q": "sub_admin"})
    assert listing.status_code == 200 and listing.context["cl"].result_count == 1
    filtered = browser.get(
        reverse("admin:subscriptions_subscription_changelist"), {"status__exact": "canceled"}
    )
    assert filtered.context["cl"].result_count == 0
    page = browser.get(reverse("admin:subscriptions_subscription_change", args=[sub.pk]))
    assert page.status_code == 200 and b"started" in page.content
    assert (
        browser.post(
            reverse("admin:subscriptions_subscription_change", args=[sub.pk]), {"status": "canceled"}
        ).status_code
        == 403
    )
    assert browser.get(reverse("admin:subscriptions_subscription_add")).status_code == 403
    assert Subscription.objects.get().status == "active"


def test_plan_changelist_filters_and_searches(browser, growth, pro):
    response = browser.get(reverse("admin:subscriptions_plan_changelist"), {"q": "price_growth_m"})
    assert response.status_code == 200 and response.context["cl"].result_count == 1
    response = browser.get(reverse("admin:subscriptions_plan_changelist"), {"is_active__exact": "1"})
    assert response.context["cl"].result_count == 2
