"""Authentication and tenancy over HTTP: who may see and change what, on which platform."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.services import api_token_issue
from credits.models import CreditAccount, LedgerEntry
from credits.services import credits_grant
from tests.api_helpers import (
    ACCOUNT_URL,
    ADMIN_TRANSACTIONS_URL,
    MANUAL_URL,
    TRANSACTIONS_URL,
    db_snapshot,
    error_of,
    post_json,
)
from tests.conftest import client_for, make_member

pytestmark = pytest.mark.django_db

READS = [ACCOUNT_URL, TRANSACTIONS_URL, ADMIN_TRANSACTIONS_URL]


def call(client, url: str, account_id=None):  # noqa: ANN001, ANN201
    if url == MANUAL_URL:
        return post_json(client, url, {"account_id": str(account_id or CreditAccount.objects.first().id),
                                       "amount": "5", "description": "x"})
    return client.get(url)


def make_operator(username: str = "root") -> tuple[object, str]:
    user = get_user_model().objects.create_superuser(username, f"{username}@example.com", "pw")
    return user, api_token_issue(user=user).key


# --- authentication ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [*READS, MANUAL_URL])
def test_no_credentials_is_401(member, url):
    before = db_snapshot()
    response = call(APIClient(), url, member.account.id)
    error_of(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert db_snapshot() == before


@pytest.mark.parametrize("url", [*READS, MANUAL_URL])
@pytest.mark.parametrize(
    "header",
    ["Token 0000000000000000000000000000000000000000", "Token ", "Token a b", "Token " + "x" * 300],
)
def test_bad_token_is_401(admin, member, url, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    before = db_snapshot()
    error_of(call(client, url, member.account.id), 401, "authentication_failed")
    assert db_snapshot() == before


@pytest.mark.parametrize("header", ["Bearer {token}", "{token}", "Basic {token}"])
def test_a_token_under_another_scheme_is_not_accepted(member, header):
    # Bearer is the JWT scheme (tests/accounts/test_jwt.py): a DRF Token key is not a JWT, so it is refused there
    # too, with the envelope's authentication_failed; an unknown scheme is no credentials at all.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.format(token=member.token))
    before = db_snapshot()
    error = error_of(client.get(ACCOUNT_URL), 401)
    if header.startswith("Bearer"):
        assert error["code"] == "authentication_failed"
        assert "JWT" in error["message"]
    assert db_snapshot() == before


def test_inactive_users_token_is_401(member):
    get_user_model().objects.filter(pk=member.user.pk).update(is_active=False)
    error_of(client_for(member).get(ACCOUNT_URL), 401, "authentication_failed")


def test_session_auth_works_for_a_logged_in_user(member):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(member.user)
    response = client.get(ACCOUNT_URL)
    assert response.status_code == 200
    assert response.json()["account_id"] == str(member.account.id)
    assert client.get(TRANSACTIONS_URL).json()["count"] == 1


def test_session_auth_needs_csrf_for_writes(admin, member):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(admin.user)
    before = db_snapshot()
    response = post_json(client, MANUAL_URL, {"account_id": str(member.account.id), "amount": "5",
                                              "description": "csrf"})
    error = error_of(response, 403, "permission_denied")
    assert "CSRF" in error["message"]
    assert db_snapshot() == before


def test_logged_in_session_with_password_login(member):
    user = member.user
    user.set_password("s3cret-pass")
    user.save()
    client = APIClient()
    assert client.login(username=user.username, password="s3cret-pass")
    assert client.get(ACCOUNT_URL).json()["available_credits"] == "100.00"
    client.logout()
    error_of(client.get(ACCOUNT_URL), 401, "not_authenticated")


# --- platforms --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [*READS, MANUAL_URL])
def test_member_of_a_cannot_reach_platform_b(member, outsider, url):
    client = client_for(member, platform_key="globex")
    before = db_snapshot()
    response = call(client, url, outsider.account.id)
    error_of(response, 403, "not_a_member")
    assert str(outsider.account.id) not in response.content.decode()
    assert db_snapshot() == before


def test_member_of_a_never_sees_b_rows(member, outsider):
    account = client_for(member).get(ACCOUNT_URL).json()
    assert account["platform_key"] == "acme"
    listed = client_for(member).get(TRANSACTIONS_URL).json()
    outsider_ids = {str(pk) for pk in LedgerEntry.objects.filter(account=outsider.account).values_list("pk", flat=True)}
    assert outsider_ids
    assert not outsider_ids & {row["id"] for row in listed["results"]}


@pytest.mark.parametrize("url", [ACCOUNT_URL, TRANSACTIONS_URL])
def test_member_cannot_use_platform_key(member, url):
    error_of(client_for(member).get(url, {"platform_key": "acme"}), 403, "admin_required")


@pytest.mark.parametrize("url", [ACCOUNT_URL, TRANSACTIONS_URL])
def test_admin_of_b_cannot_use_platform_key_a(outsider, platform, url):
    response = client_for(outsider).get(url, {"platform_key": "acme"})
    error_of(response, 403)
    pool = CreditAccount.objects.get(platform=platform, user__isnull=True)
    assert str(pool.id) not in response.content.decode()


@pytest.mark.parametrize("url", [ACCOUNT_URL, TRANSACTIONS_URL])
@pytest.mark.parametrize("who", ["member", "admin", "outsider"])
def test_unknown_platform_key_is_403_for_non_operators(request, url, who):
    caller = request.getfixturevalue(who)
    error_of(client_for(caller).get(url, {"platform_key": "does-not-exist"}), 403)


@pytest.mark.parametrize("url", [ADMIN_TRANSACTIONS_URL, MANUAL_URL])
def test_member_cannot_call_admin_endpoints(member, url):
    before = db_snapshot()
    error_of(call(client_for(member), url, member.account.id), 403, "admin_required")
    assert db_snapshot() == before


def test_admin_list_shows_only_the_admins_platform(admin, member, outsider):
    credits_grant(account_id=outsider.account.id, amount=Decimal("3"), description="globex")
    body = client_for(admin).get(ADMIN_TRANSACTIONS_URL).json()
    platforms = set(LedgerEntry.objects.filter(pk__in=[r["id"] for r in body["results"]]).values_list(
        "platform__platform_key", flat=True))
    assert platforms == {"acme"}
    assert body["count"] == LedgerEntry.objects.filter(platform__platform_key="acme").count()


# --- several platforms --------------------------------------------------------------------------------------


@pytest.fixture
def two_platform_user(platform, other_platform):  # noqa: ANN001, ANN201
    """``sam``: a member of acme (30 credits) and an admin of globex (7 credits); one user, one token."""
    in_acme = make_member(platform, "sam", Role.MEMBER, credits="30")
    in_globex = make_member(other_platform, "sam", Role.ADMIN, credits="7")
    assert in_acme.token == in_globex.token
    return in_acme, in_globex


@pytest.mark.parametrize("url", [*READS, MANUAL_URL])
def test_user_in_two_platforms_must_choose_one(two_platform_user, url):
    in_acme, _ = two_platform_user
    before = db_snapshot()
    error = error_of(call(client_for(in_acme), url, in_acme.account.id), 400, "platform_ambiguous")
    assert "X-Platform-Key" in error["message"]
    assert db_snapshot() == before


def test_x_platform_key_picks_the_platforms_account(two_platform_user):
    in_acme, in_globex = two_platform_user
    acme = client_for(in_acme, platform_key="acme").get(ACCOUNT_URL).json()
    globex = client_for(in_globex, platform_key="globex").get(ACCOUNT_URL).json()
    assert (acme["account_id"], acme["platform_key"], acme["available_credits"]) == (
        str(in_acme.account.id), "acme", "30.00"
    )
    assert (globex["account_id"], globex["platform_key"], globex["available_credits"]) == (
        str(in_globex.account.id), "globex", "7.00"
    )
    rows = client_for(in_acme, platform_key="globex").get(TRANSACTIONS_URL).json()
    assert [r["id"] for r in rows["results"]] == [
        str(pk) for pk in LedgerEntry.objects.filter(account=in_globex.account).values_list("pk", flat=True)
    ]


def test_role_follows_the_chosen_platform(two_platform_user, member):
    in_acme, in_globex = two_platform_user
    # admin in globex
    assert client_for(in_globex, platform_key="globex").get(ADMIN_TRANSACTIONS_URL).status_code == 200
    assert client_for(in_globex, platform_key="globex").get(ACCOUNT_URL, {"platform_key": "globex"}).json()[
        "is_platform_account"
    ] is True
    # a mere member in acme
    before = db_snapshot()
    error_of(client_for(in_acme, platform_key="acme").get(ADMIN_TRANSACTIONS_URL), 403, "admin_required")
    response = post_json(client_for(in_acme, platform_key="acme"), MANUAL_URL,
                         {"account_id": str(member.account.id), "amount": "5", "description": "x"})
    error_of(response, 403, "admin_required")
    # and being an admin in globex is no way into acme's platform account
    error_of(client_for(in_globex, platform_key="globex").get(ACCOUNT_URL, {"platform_key": "acme"}), 403)
    # nor into acme's accounts from globex
    response = post_json(client_for(in_globex, platform_key="globex"), MANUAL_URL,
                         {"account_id": str(member.account.id), "amount": "5", "description": "x"})
    error_of(response, 404, "account_not_found")
    assert db_snapshot() == before


@pytest.mark.parametrize("key", ["globex", "no-such-platform"])
def test_x_platform_key_of_a_platform_the_user_is_not_in_is_403(member, other_platform, key):
    error_of(client_for(member, platform_key=key).get(ACCOUNT_URL), 403, "not_a_member")


def test_x_platform_key_of_ones_own_platform_is_fine(member):
    assert client_for(member, platform_key="acme").get(ACCOUNT_URL).json()["account_id"] == str(member.account.id)


def test_user_without_any_membership_is_403(db):
    user = get_user_model().objects.create_user("loner")
    token = api_token_issue(user=user).key
    error_of(client_for(token=token).get(ACCOUNT_URL), 403, "not_a_member")
    error_of(client_for(token=token).get(TRANSACTIONS_URL), 403, "not_a_member")
    assert not CreditAccount.objects.filter(user=user).exists()


# --- operators (superusers) ---------------------------------------------------------------------------------


def test_operator_uses_admin_endpoints_of_any_platform(member, outsider):
    _, token = make_operator()
    acme = client_for(token=token, platform_key="acme")
    listed = acme.get(ADMIN_TRANSACTIONS_URL).json()
    assert listed["count"] == LedgerEntry.objects.filter(platform__platform_key="acme").count()
    response = post_json(acme, MANUAL_URL, {"account_id": str(member.account.id), "amount": "2.5",
                                            "description": "operator"})
    assert response.status_code == 201
    entry = LedgerEntry.objects.get(pk=response.json()["id"])
    assert entry.actor.username == "root"
    assert CreditAccount.objects.get(pk=member.account.id).balance == Decimal("102.5")

    globex = client_for(token=token, platform_key="globex")
    assert globex.get(ADMIN_TRANSACTIONS_URL).json()["count"] == LedgerEntry.objects.filter(
        platform__platform_key="globex"
    ).count()
    # the operator acts in the platform named by the header: acme's accounts are not globex's
    error_of(post_json(globex, MANUAL_URL, {"account_id": str(member.account.id), "amount": "1",
                                            "description": "x"}), 404, "account_not_found")


def test_operator_uses_platform_key(platform, other_platform):
    _, token = make_operator()
    client = client_for(token=token, platform_key="acme")
    pool = CreditAccount.objects.get(platform=platform, user__isnull=True)
    credits_grant(account_id=pool.id, amount=Decimal("9"), description="pool")
    assert client.get(ACCOUNT_URL, {"platform_key": "acme"}).json()["account_id"] == str(pool.id)
    assert client.get(TRANSACTIONS_URL, {"platform_key": "acme"}).json()["count"] == 1
    other = client.get(ACCOUNT_URL, {"platform_key": "globex"}).json()
    assert other["account_id"] == str(CreditAccount.objects.get(platform=other_platform, user__isnull=True).id)


def test_operator_without_a_platform_must_name_one(platform):
    _, token = make_operator()
    error_of(client_for(token=token).get(ADMIN_TRANSACTIONS_URL), 400, "platform_ambiguous")
    error_of(client_for(token=token, platform_key="nope").get(ADMIN_TRANSACTIONS_URL), 404, "platform_not_found")
    # an operator has no account of their own in a platform they do not belong to
    error_of(client_for(token=token, platform_key="acme").get(ACCOUNT_URL), 403, "not_a_member")


@pytest.mark.parametrize("platform_key", [None, "globex"])
def test_the_token_lookup_brings_the_memberships(two_platform_user, platform_key, django_assert_num_queries):
    """One statement authenticates and resolves the platform (the memberships come with the user)."""
    from accounts.authentication import PreparedTokenAuthentication
    from accounts.selectors import membership_list_for_user, memberships_attached
    from accounts.tenancy import tenant_resolve

    in_acme, in_globex = two_platform_user
    member = in_globex if platform_key else make_member(in_acme.membership.platform, "solo")
    with django_assert_num_queries(0):  # the lookup goes through psycopg directly; nothing else runs
        user, _ = PreparedTokenAuthentication().authenticate_credentials(member.token)
        tenant = tenant_resolve(user=user, platform_key=platform_key)

    assert (tenant.platform.pk, tenant.membership.pk, tenant.membership.role) == (
        member.membership.platform_id, member.membership.pk, member.membership.role)
    assert tenant.platform.platform_key == member.membership.platform.platform_key
    assert tenant.membership.created_at == member.membership.created_at
    assert [m.pk for m in memberships_attached(user)] == [m.pk for m in membership_list_for_user(user=user)]
