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
from tests.subscriptions.conftest import make_plan, start

pytestmark = pytest.mark.django_db

LINKS_URL = "/api/billing/admin/page-links/"
PAGE = "/billing/"


def link_for(admin, username: str) -> dict:  # noqa: ANN001
    response = post_json(client_for(admin), LINKS_URL, {"username": username})
    assert response.status_code == 201, response.content
    return response.json()


def signed_in(admin, member) -> Client:  # noqa: ANN001
    browser = Client()
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

    first = browser.get(PAGE).content.decode()
    second = browser.get(PAGE, {"page": 2}).content.decode()
    grants = browser.get(PAGE, {"transaction_type": "add"}).content.decode()
    bad = browser.get(PAGE, {"from_date": "yesterday"})

    assert "26 transactions" in first and "call 24" in first and "call 4" not in first and 'rel="next"' in first
    assert "call 4" in second and 'rel="prev"' in second and 'rel="next"' not in second
    assert "1 transaction" in grants and "test funds" in grants and "call 1" not in grants
    assert bad.status_code == 400 and b"from_date" in bad.content


def test_a_member_sees_only_their_own_account(admin, member, platform):
    other = make_member(platform, "olga", credits="7")
    credits_debit(account_id=other.account.id, amount=Decimal("1"), description="olga's secret call")
    browser = signed_in(admin, member)

    page = browser.get(PAGE).content.decode()

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

    browser = signed_in(admin, member)
    browser.get(PAGE)
    with CaptureQueriesContext(connection) as page:
        assert browser.get(PAGE).status_code == 200
    with CaptureQueriesContext(connection) as calls:
        for url, params in [("/api/billing/account/", {}), ("/api/billing/subscription/", {}),
                            ("/api/billing/transactions/", {"page_size": 20})]:
            assert browser.get(url, params, HTTP_X_PLATFORM_KEY=platform.platform_key).status_code == 200

    assert len(work(page.captured_queries)) == len(work(calls.captured_queries))
