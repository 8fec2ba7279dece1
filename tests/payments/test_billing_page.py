"""The billing page (/billing/): sign-in links and the password form, and what a member sees (plan, credits,
history with the API's filters and pages), over the native views."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import LoginFailure, Membership, SignInLink
from credits.services import credits_debit
from tests.api_helpers import error_of, post_json
from tests.conftest import client_for, make_member
from tests.payments import stripe_subscriptions
from tests.payments.conftest import deliver, fake_stripe
from tests.subscriptions.conftest import make_plan, start

stripe_billing = stripe_subscriptions.stripe_billing  # the fake Stripe: subscription sessions, Billing Portal
_ = fake_stripe  # the fake Stripe: top-up sessions

pytestmark = pytest.mark.django_db

LINKS_URL = "/api/billing/admin/page-links/"
PAGE = "/billing/"
FRAGMENT = "/billing/fragment/{}/"
HOST = "billing.acme.test"  # the page's host: the providers send members back to it


@pytest.fixture(autouse=True)
def _page_host(settings):  # noqa: ANN001, ANN202
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, HOST]


def link_for(admin, username: str) -> dict:  # noqa: ANN001
    response = post_json(client_for(admin), LINKS_URL, {"username": username})
    assert response.status_code == 201, response.content
    return response.json()


def signed_in(admin, member) -> Client:  # noqa: ANN001
    browser = Client(HTTP_HOST=HOST)
    landed = browser.get(link_for(admin, member.user.username)["url"])
    assert landed.status_code == 302 and landed["Location"] == PAGE
    return browser


# --- sign-in links ----------------------------------------------------------------------------------------------


def test_an_admin_mints_a_single_use_link_that_signs_the_member_in(admin, member):
    body = link_for(admin, member.user.username)
    browser = Client()

    first = browser.get(body["url"])
    page = browser.get(PAGE)
    second = Client().get(body["url"])

    assert body["url"].startswith("http://testserver/billing/sign-in/")
    assert timezone.now() < timezone.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert first.status_code == 302 and page.status_code == 200
    assert member.user.username.encode() in page.content
    assert second.status_code == 410 and b"expired or was already used" in second.content
    assert SignInLink.objects.get().used_at is not None


def test_only_the_token_hash_is_kept(admin, member):
    token = link_for(admin, member.user.username)["url"].rstrip("/").rsplit("/", 1)[1]

    assert token not in SignInLink.objects.get().token_hash and len(token) >= 40


def test_an_expired_link_is_refused(admin, member):
    url = link_for(admin, member.user.username)["url"]
    SignInLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1),
                              created_at=timezone.now() - timedelta(minutes=10))

    assert Client().get(url).status_code == 410
    assert Client().get(PAGE).status_code == 302  # not signed in


def test_a_link_of_a_member_who_left_is_refused(admin, member):
    url = link_for(admin, member.user.username)["url"]
    Membership.objects.filter(user=member.user).delete()

    assert Client().get(url).status_code == 410


@pytest.mark.parametrize("token", ["x", "a" * 43, "a" * 500])
def test_a_made_up_link_is_refused(token):
    assert Client().get(f"/billing/sign-in/{token}/").status_code == 410


def test_members_cannot_mint_links_and_admins_only_for_their_platform(admin, member, outsider):
    error_of(post_json(client_for(member), LINKS_URL, {"username": member.user.username}), 403, "admin_required")
    error_of(post_json(client_for(admin), LINKS_URL, {"username": outsider.user.username}), 404, "member_not_found")
    error_of(post_json(client_for(admin), LINKS_URL, {"username": ""}), 400)
    error_of(post_json(client_for(admin), LINKS_URL, {"username": "mia", "extra": 1}), 400)
    assert not SignInLink.objects.exists()


# --- the password form --------------------------------------------------------------------------------------------


def test_a_member_signs_in_with_a_password(member):
    member.user.set_password("pw-123456789")
    member.user.save()
    browser = Client()

    wrong = browser.post("/billing/sign-in/", {"username": member.user.username, "password": "nope"})
    right = browser.post("/billing/sign-in/", {"username": member.user.username, "password": "pw-123456789"})

    assert wrong.status_code == 401 and b"wrong" in wrong.content
    assert right.status_code == 302 and browser.get(PAGE).status_code == 200
    assert LoginFailure.objects.count() == 1


def test_the_form_shares_the_logins_brute_force_limit(member, settings):
    settings.JWT_LOGIN_FAILURES_PER_USERNAME = 2
    for _ in range(2):
        Client().post("/billing/sign-in/", {"username": member.user.username, "password": "nope"})

    assert Client().post("/billing/sign-in/", {"username": member.user.username, "password": "x"}).status_code == 429


def test_the_form_needs_its_csrf_token(member):
    browser = Client(enforce_csrf_checks=True)

    assert browser.post("/billing/sign-in/", {"username": "mia", "password": "x"}).status_code == 403


def test_signing_out_ends_the_session(admin, member):
    browser = signed_in(admin, member)

    browser.post("/billing/sign-out/")

    assert browser.get(PAGE).status_code == 302


# --- the page -----------------------------------------------------------------------------------------------------


def test_the_page_shows_the_plan_and_credits_of_the_api(admin, member, platform):
    pro = make_plan(platform, "pro", name="Pro")
    start(member.account, pro)
    browser = signed_in(admin, member)
    account = client_for(member).get("/api/billing/account/").json()

    page = browser.get(PAGE).content.decode()

    assert "<strong>Pro</strong>" in page
    assert f'data-testid="balance">{account["balance"]}<' in page
    assert f'data-testid="available">{account["available_credits"]}<' in page


def test_history_is_the_api_listing_with_its_filters_and_pages(admin, member):
    for n in range(25):
        credits_debit(account_id=member.account.id, amount=Decimal("0.01"), description=f"call {n}")
    browser = signed_in(admin, member)

    first = browser.get(PAGE, {"full": 1}).content.decode()
    second = browser.get(PAGE, {"page": 2, "full": 1}).content.decode()
    grants = browser.get(FRAGMENT.format("history"), {"transaction_type": "add"}).content.decode()
    bad = browser.get(PAGE, {"from_date": "yesterday", "full": 1})

    assert "26 transactions" in first and "call 24" in first and "call 4" not in first and 'rel="next"' in first
    assert "call 4" in second and 'rel="prev"' in second and 'rel="next"' not in second
    assert "1 transaction" in grants and "test funds" in grants and "call 1" not in grants
    assert bad.status_code == 400 and b"from_date" in bad.content


def test_a_member_sees_only_their_own_account(admin, member, platform):
    other = make_member(platform, "olga", credits="7")
    credits_debit(account_id=other.account.id, amount=Decimal("1"), description="olga's secret call")
    browser = signed_in(admin, member)

    page = browser.get(PAGE, {"full": 1}).content.decode()

    assert "olga's secret call" not in page and "olga" not in page


def test_a_member_removed_after_signing_in_sees_the_apis_refusal(admin, member):
    browser = signed_in(admin, member)
    Membership.objects.filter(user=member.user).delete()

    response = browser.get(PAGE)

    assert response.status_code == 403 and b"not a member" in response.content.lower()


def test_the_page_without_a_session_sends_to_sign_in():
    response = Client().get(PAGE)

    assert response.status_code == 302 and response["Location"] == "/billing/sign-in/"


# --- query counts ---------------------------------------------------------------------------------------------------

QUERIES = {"billing_admin_page_links_create": 2}  # the member (one statement), the link's insert


def test_minting_a_link_runs_its_queries(django_assert_num_queries, admin, member):
    client = client_for(admin)
    with django_assert_num_queries(QUERIES["billing_admin_page_links_create"]):
        response = post_json(client, LINKS_URL, {"username": member.user.username})
    assert response.status_code == 201


def test_the_page_runs_the_queries_of_the_api_calls_it_shows(admin, member, platform):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def work(queries: list[dict]) -> list[str]:  # leaves out loading the session and its user
        return [q["sql"] for q in queries if '"django_session"' not in q["sql"] and 'FROM "auth_user"' not in q["sql"]]

    def api(calls: list[tuple[str, dict]]) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            for url, params in calls:
                status = browser.get(url, params, HTTP_X_PLATFORM_KEY=platform.platform_key).status_code
                assert status in (200, 404)
        return work(queries.captured_queries)

    def page(params: dict) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            assert browser.get(PAGE, params).status_code == 200
        return work(queries.captured_queries)

    browser = signed_in(admin, member)
    browser.get(PAGE)
    today = timezone.now().date()
    top = [("/api/billing/account/", {}), ("/api/billing/entitlements/me/", {}), ("/api/billing/subscription/", {})]
    below = [("/api/billing/usage/stats/", {"period": "daily", "from": str(today - timedelta(days=29)),
                                            "to": str(today)}),
             ("/api/billing/transactions/", {"page_size": 20}), ("/api/billing/plans/", {"page_size": 100}),
             ("/api/billing/payment-method/", {}), ("/api/billing/orders/", {"page_size": 10})]

    assert len(page({})) == len(api(top))  # the first response: the top of the page
    assert len(page({"full": 1})) == len(api(top + below))



# --- usage, plans, checkout, card, auto-recharge, orders -------------------------------------------------------


@pytest.fixture
def allowed_origin(settings):  # noqa: ANN001, ANN201
    settings.CHECKOUT_ALLOWED_ORIGINS = [f"http://{HOST}"]


def test_the_usage_chart_draws_the_apis_daily_figures(admin, member, platform):
    from tests.credits.test_usage_stats import rollup, today

    rollup(member.account, today(), "/v1/chat", ok=4, credits="2.50")
    rollup(member.account, today() - timedelta(days=2), "/v1/embed", ok=1, credits="0.50")
    browser = signed_in(admin, member)

    page = browser.get(FRAGMENT.format("usage")).content.decode()

    assert 'data-testid="usage-chart"' in page and page.count("<rect ") == 30
    usage = client_for(member).get("/api/billing/usage/stats/", {"period": "daily"}).json()
    assert f"{usage['credits_consumed']} credits for 5 requests" in page
    assert "/v1/chat" in page and "/v1/embed" in page


def test_upgrade_goes_to_stripe_checkout_and_back_to_a_page_that_waits_for_the_webhook(
        stripe_billing, allowed_origin, admin, member, platform):
    from payments.models import Order

    pro = make_plan(platform, "pro", name="Pro", stripe_price_monthly="price_pro_m")
    browser = signed_in(admin, member)
    page = browser.get(FRAGMENT.format("plans")).content.decode()
    assert "Upgrade" in page

    response = browser.post("/billing/checkout/", {"plan_id": str(pro.pk)})

    assert response.status_code == 302 and response["Location"].startswith("https://checkout.stripe.test/")
    form = stripe_billing.requests[-1]["form"]
    assert form["success_url"] == f"http://{HOST}/billing/?checkout=done"
    back = browser.get(PAGE, {"checkout": "done"}).content.decode()
    assert "Waiting for the payment" in back and 'http-equiv="refresh"' in back
    order = Order.objects.get()
    event = stripe_subscriptions.session_completed(
        order_id=str(order.id), session_id=order.provider_checkout_id, subscription_id="sub_page_1",
        amount_total=1000)
    assert deliver(event).status_code == 200  # the signed webhook, as Stripe sends it
    confirmed = browser.get(PAGE, {"checkout": "done"}).content.decode()
    assert "Payment received" in confirmed and "<strong>Pro</strong>" in confirmed
    assert 'http-equiv="refresh"' not in confirmed


def test_a_top_up_outside_the_limits_shows_the_apis_message(fake_stripe, allowed_origin, admin, member):
    browser = signed_in(admin, member)

    response = browser.post("/billing/checkout/", {"amount": "1.00"})

    assert response.status_code == 400
    assert b'data-testid="problem"' in response.content and b"Amount (USD)" in response.content
    assert fake_stripe.requests == [] if hasattr(fake_stripe, "requests") else True


def test_a_top_up_goes_to_stripe(fake_stripe, allowed_origin, admin, member):
    browser = signed_in(admin, member)

    response = browser.post("/billing/checkout/", {"amount": "25.00"})

    assert response.status_code == 302 and "stripe" in response["Location"]


def test_auto_recharge_with_a_bad_value_shows_the_message_and_writes_nothing(admin, member):
    from tests.api_helpers import full_state

    browser = signed_in(admin, member)
    before = full_state()

    response = browser.post("/billing/auto-recharge/", {"enabled": "on", "threshold": "-5", "amount": "20"})

    assert response.status_code in (400, 409)
    assert b'data-testid="problem"' in response.content
    assert full_state() == before


def test_auto_recharge_settings_are_saved_through_the_api(admin, member):
    browser = signed_in(admin, member)

    response = browser.post("/billing/auto-recharge/", {"threshold": "5.00", "amount": "20.00"})

    assert response.status_code == 200 and b"Auto-recharge settings saved" in response.content
    account = client_for(member).get("/api/billing/account/").json()
    assert (account["auto_recharge_threshold_usd"], account["auto_recharge_amount_usd"]) == ("5.00", "20.00")


def test_the_page_forms_need_their_csrf_token(admin, member):
    browser = Client(enforce_csrf_checks=True)
    browser.get(link_for(admin, member.user.username)["url"])

    assert browser.post("/billing/auto-recharge/", {"threshold": "5.00"}).status_code == 403


def test_orders_are_listed(fake_stripe, allowed_origin, admin, member):
    browser = signed_in(admin, member)
    browser.post("/billing/checkout/", {"amount": "25.00"})

    page = browser.get(FRAGMENT.format("orders")).content.decode()

    assert 'data-testid="orders"' in page and "top_up" in page and "pending" in page and "25.00" in page


# --- the demo -------------------------------------------------------------------------------------------------------


def test_the_demo_makes_the_page_look_alive_and_prints_alices_link(settings):
    import io

    from django.core.management import call_command

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    for command in ("seed_demo", "seed_demo_seats", "seed_demo_billing", "seed_demo_billing"):  # the last: a rerun
        call_command(command, stdout=io.StringIO())
    out = io.StringIO()
    call_command("billing_page_link", "demo", "alice", "--minutes", "60", stdout=out)
    url = out.getvalue().strip().rsplit(" ", 1)[1]
    browser = Client(HTTP_HOST="127.0.0.1")

    assert browser.get(url.replace("http://127.0.0.1:8000", "")).status_code == 302
    page = browser.get(PAGE, {"full": 1}).content.decode()

    assert "Starter" in page and "Pro" in page  # plans on sale
    assert "/v1/chat" in page and "/v1/embed" in page  # a month of usage across endpoints
    import re

    assert int(re.search(r"credits for (\d+) requests", page).group(1)) >= 50  # most of the 60 fall in the chart
    assert page.count("<rect ") == 30
    assert "top_up" in page and "paid" in page  # the order, credited as the webhook credits one
    from credits.models import LedgerEntry

    rollover = LedgerEntry.objects.get(account__user__username="bob", transaction_type="rollover")
    assert rollover.balance_delta == Decimal("-10")  # bob's unused Starter credits of last month


def test_a_seated_member_sees_the_seat_and_its_budgets(admin, member, platform):
    from entitlements.catalogue import ai_plan_create
    from entitlements.services import seat_assign, seats_grant

    plan = ai_plan_create(slug="everyday", name="Everyday AI", tier="everyday", weekly_budget=Decimal("0.50"),
                          session_budget=Decimal("0.10"), price_per_seat_cents=1000)
    seats_grant(platform=platform, ai_plan=plan, quantity=1)
    seat_assign(platform=platform, ai_plan=plan, username=member.user.username, actor=None)
    seat = client_for(member).get("/api/billing/entitlements/me/").json()["seat"]

    page = signed_in(admin, member).get(PAGE).content.decode()

    assert "Everyday AI" in page and f'class="figure">{seat["budgets"]["weekly"]["remaining"]}<' in page


def test_money_is_shown_in_the_readers_locale_with_every_digit(admin, member):
    from credits.services import credits_grant

    credits_grant(account_id=member.account.id, amount=Decimal("1234.5"), description="big grant")
    browser = signed_in(admin, member)

    english = browser.get(PAGE, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    german = browser.get(PAGE, HTTP_ACCEPT_LANGUAGE="de").content.decode()

    assert 'data-testid="balance">1,334.50<' in english
    assert 'data-testid="balance">1.334,50<' in german


def test_the_money_filter_keeps_every_digit():
    from django.utils import translation

    from payments.templatetags.billing_page import money

    with translation.override("en"):
        assert (money("0.000125"), money("1234567.5"), money(None), money("n/a")) == (
            "0.000125", "1,234,567.5", "", "n/a")


def test_the_page_loads_its_lower_sections_after_the_first_paint(admin, member):
    browser = signed_in(admin, member)

    first = browser.get(PAGE).content.decode()
    history = browser.get(FRAGMENT.format("history"))

    for name in ("usage", "history", "plans", "card", "orders"):
        assert f'data-fragment="/billing/fragment/{name}/"' in first
    assert "test funds" not in first and 'data-testid="available"' in first
    assert history.status_code == 200 and b'data-section="history"' in history.content and b"test funds" in history.content
    assert b"<html" not in history.content  # a section, not a page
    assert browser.get(FRAGMENT.format("nope")).status_code == 404
    assert Client().get(FRAGMENT.format("history")).status_code == 401


def test_out_of_credits_is_said_plainly(admin, member):
    credits_debit(account_id=member.account.id, amount=Decimal("100"), description="the last call")

    page = signed_in(admin, member).get(PAGE).content.decode()

    assert 'data-testid="out-of-credits"' in page and "out of credits" in page


def test_manage_subscription_opens_the_providers_portal(stripe_billing, allowed_origin, admin, member, platform):
    start(member.account, make_plan(platform, "pro", name="Pro"), provider_customer_id="cus_page_1")
    browser = signed_in(admin, member)

    response = browser.post("/billing/portal/")

    assert response.status_code == 302 and response["Location"].startswith("https://billing.stripe.test/")
    assert stripe_billing.requests[-1]["form"]["return_url"] == f"http://{HOST}/billing/"


def test_manage_subscription_without_a_customer_says_why(stripe_billing, allowed_origin, admin, member):
    response = signed_in(admin, member).post("/billing/portal/")

    assert response.status_code == 409 and b'data-testid="problem"' in response.content


def test_saving_a_card_goes_to_stripe_and_removing_it_turns_auto_recharge_off(fake_stripe, allowed_origin, admin,
                                                                               member):
    from payments.models import SavedPaymentMethod

    browser = signed_in(admin, member)
    saving = browser.post("/billing/card/", {"action": "save"})
    assert saving.status_code == 302 and saving["Location"].startswith("https://checkout.stripe.test/c/setup/")

    SavedPaymentMethod.objects.create(account=member.account, provider="stripe", provider_customer_id="cus_1",
                                      provider_payment_method_id="pm_1", brand="visa", last4="4242")  # as Stripe's
    # webhooks record it
    assert b"visa" in browser.get(FRAGMENT.format("card")).content
    removed = browser.post("/billing/card/", {"action": "forget"})

    assert removed.status_code == 200 and b"Your card was removed" in removed.content
    assert browser.get(FRAGMENT.format("card")).content.count(b"No card saved.") == 1
