"""API tokens stored hashed: issued (the key shown once), listed, revoked and expired, per user and per platform,
over the API, the command line and Django admin; and keys of rest_framework.authtoken carried over by migration."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts.models import ApiToken, Membership, Role, secret_digest
from accounts.services import api_token_issue, api_token_revoke
from tests.api_helpers import ACCOUNT_URL, db_snapshot, error_of, invalid_field, post_json
from tests.conftest import client_for, make_member

pytestmark = pytest.mark.django_db

TOKENS = "/api/billing/tokens/"
ADMIN_TOKENS = "/api/billing/admin/tokens/"


def token_of(key: str) -> ApiToken:
    return ApiToken.objects.get(digest=secret_digest(key))


# --- the key: shown once, stored as its SHA-256 ------------------------------------------------------------------


def test_a_member_issues_a_token_shown_once_and_only_its_digest_is_stored(member):
    response = post_json(client_for(member), TOKENS, {"name": "ci", "expires_in_days": 30})

    assert response.status_code == 201
    body = response.json()
    key = body["key"]
    assert len(key) == 40 and set(key) <= set("0123456789abcdef")
    assert body["prefix"] == key[:8] and body["name"] == "ci" and body["platform_key"] == "acme"
    assert body["username"] == member.user.username and body["active"] is True and body["revoked_at"] is None
    assert response["Location"] == f"{TOKENS}{body['id']}/"
    token = ApiToken.objects.get(pk=body["id"])
    assert token.digest == secret_digest(key)
    assert key not in json.dumps([list(row) for row in ApiToken.objects.values_list()], default=str)
    expires = timezone.datetime.fromisoformat(body["expires_at"])
    assert timedelta(days=30) - timedelta(minutes=1) < expires - timezone.now() <= timedelta(days=30)

    assert client_for(token=key).get(ACCOUNT_URL).status_code == 200
    listed = client_for(member).get(TOKENS).json()["results"]
    assert body["id"] in [row["id"] for row in listed]
    assert all("key" not in row for row in listed)
    assert client_for(member).get(f"{TOKENS}{body['id']}/").json() == {k: v for k, v in body.items() if k != "key"}


def test_a_token_without_expiry_never_expires(member):
    body = post_json(client_for(member), TOKENS, {}).json()
    assert (body["expires_at"], body["name"]) == (None, "")


@pytest.mark.parametrize("payload, field", [
    ({"expires_in_days": 0}, "expires_in_days"),
    ({"expires_in_days": -1}, "expires_in_days"),
    ({"expires_in_days": 3651}, "expires_in_days"),
    ({"expires_in_days": "30"}, "expires_in_days"),
    ({"expires_in_days": 1.5}, "expires_in_days"),
    ({"expires_in_days": True}, "expires_in_days"),
    ({"expires_in_days": 10**30}, "expires_in_days"),
    ({"name": "x" * 101}, "name"),
    ({"name": 7}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"platform": "globex"}, "platform"),  # not a field: a token is scoped to the caller's platform
])
def test_bad_input_is_a_400_that_issues_nothing(member, payload, field):
    before = db_snapshot()
    invalid_field(post_json(client_for(member), TOKENS, payload), field)
    assert db_snapshot() == before
    assert not ApiToken.objects.filter(user=member.user).exclude(pk=token_of(member.token).pk).exists()


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "[]", '"x"', "{"])
def test_a_body_that_is_not_an_object_issues_nothing(member, raw):
    assert post_json(client_for(member), TOKENS, raw).status_code == 400
    assert ApiToken.objects.filter(user=member.user).count() == 1


# --- expiry and revocation ------------------------------------------------------------------------------------------


def test_an_expired_token_is_refused(member):
    issued = api_token_issue(user=member.user, expires_at=timezone.now() + timedelta(days=1))
    assert client_for(token=issued.key).get(ACCOUNT_URL).status_code == 200
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1),
                                                       created_at=timezone.now() - timedelta(days=2))

    error = error_of(client_for(token=issued.key).get(ACCOUNT_URL), 401, "authentication_failed")
    assert error["message"] == "Token expired."


def test_revoking_a_token_refuses_it_from_its_next_use(member):
    issued = api_token_issue(user=member.user, name="laptop")
    client = client_for(member)

    assert client.delete(f"{TOKENS}{issued.token.pk}/").status_code == 204
    assert client.delete(f"{TOKENS}{issued.token.pk}/").status_code == 204  # twice: no error, no change
    error = error_of(client_for(token=issued.key).get(ACCOUNT_URL), 401, "authentication_failed")
    assert error["message"] == "Token revoked."
    row = client.get(f"{TOKENS}{issued.token.pk}/").json()
    assert row["active"] is False and row["revoked_at"]
    assert client.get(ACCOUNT_URL).status_code == 200  # the member's other token still works
    actives = client.get(TOKENS, {"active": "true"}).json()["results"]
    assert [r["id"] for r in actives] == [token_of(member.token).pk]
    assert [r["id"] for r in client.get(TOKENS, {"active": "false"}).json()["results"]] == [issued.token.pk]


def test_a_token_may_revoke_itself(member):
    assert client_for(member).delete(f"{TOKENS}{token_of(member.token).pk}/").status_code == 204
    assert client_for(member).get(ACCOUNT_URL).status_code == 401


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "99999999999999999999", "0"])
def test_a_token_id_that_names_nothing_is_a_404(member, raw):
    error_of(client_for(member).get(f"{TOKENS}{raw}/"), 404, "api_token_not_found")
    error_of(client_for(member).delete(f"{TOKENS}{raw}/"), 404, "api_token_not_found")


def test_someone_elses_token_is_a_404_to_see_and_to_revoke(member, other_member, outsider):
    for other in (other_member, outsider):
        pk = token_of(other.token).pk
        error_of(client_for(member).get(f"{TOKENS}{pk}/"), 404, "api_token_not_found")
        error_of(client_for(member).delete(f"{TOKENS}{pk}/"), 404, "api_token_not_found")
        assert token_of(other.token).revoked_at is None
        assert pk not in [r["id"] for r in client_for(member).get(TOKENS).json()["results"]]


@pytest.mark.parametrize("query", [{"active": "yes"}, {"username": "bob"}, {"page_size": "0"}])
def test_a_listing_refuses_a_bad_or_unknown_query(member, query):
    assert client_for(member).get(TOKENS, query).status_code == 400


# --- scope: a token issued over the API acts in its platform only ---------------------------------------------------


def test_a_scoped_token_acts_in_its_platform_only(platform, other_platform):
    sam = make_member(platform, "sam", credits="3")
    make_member(other_platform, "sam", Role.ADMIN)
    key = post_json(client_for(token=sam.token, platform_key="acme"), TOKENS, {}).json()["key"]

    assert client_for(token=key).get(ACCOUNT_URL).json()["platform_key"] == "acme"  # no header needed
    error_of(client_for(token=key, platform_key="globex").get(ACCOUNT_URL), 403, "not_a_member")
    # sam's unscoped token still picks either
    assert client_for(token=sam.token, platform_key="globex").get(ACCOUNT_URL).status_code == 200
    # listed under acme, not under globex
    assert token_of(key).pk in [r["id"] for r in client_for(token=sam.token, platform_key="acme").get(TOKENS).json()["results"]]
    assert token_of(key).pk not in [
        r["id"] for r in client_for(token=sam.token, platform_key="globex").get(TOKENS).json()["results"]]

    Membership.objects.filter(user=sam.user, platform=platform).delete()
    error = error_of(client_for(token=key).get(ACCOUNT_URL), 401, "authentication_failed")
    assert "no longer a member" in error["message"]


def test_a_token_minted_with_a_jwt_is_scoped_to_the_jwts_platform(platform, other_platform):
    sam = make_member(platform, "sam")
    make_member(other_platform, "sam")
    sam.user.set_password("correct horse battery staple")
    sam.user.save()
    access = post_json(client_for(), "/api/auth/jwt/", {"username": "sam", "password": "correct horse battery staple",
                                                        "platform_key": "globex"}).json()["access"]
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    body = post_json(client, TOKENS, {"name": "from jwt"}).json()
    assert body["platform_key"] == "globex"
    assert client_for(token=body["key"]).get(ACCOUNT_URL).json()["platform_key"] == "globex"


def test_an_inactive_users_token_is_refused(member):
    get_user_model().objects.filter(pk=member.user.pk).update(is_active=False)
    error_of(client_for(member).get(ACCOUNT_URL), 401, "authentication_failed")


# --- platform admins: every token usable in their platform ------------------------------------------------------


def test_an_admin_lists_the_tokens_usable_in_the_platform_and_no_other(admin, member, outsider, other_platform):
    scoped_elsewhere = api_token_issue(user=member.user, platform=other_platform)  # not usable in acme
    rows = client_for(admin).get(ADMIN_TOKENS).json()
    ids = {r["id"] for r in rows["results"]}
    assert {token_of(admin.token).pk, token_of(member.token).pk} <= ids
    assert token_of(outsider.token).pk not in ids and scoped_elsewhere.token.pk not in ids
    assert all("key" not in r for r in rows["results"])
    only = client_for(admin).get(ADMIN_TOKENS, {"username": member.user.username}).json()["results"]
    assert [r["id"] for r in only] == [token_of(member.token).pk]
    error_of(client_for(admin).get(f"{ADMIN_TOKENS}{token_of(outsider.token).pk}/"), 404, "api_token_not_found")


def test_an_admin_issues_a_scoped_token_for_a_member_and_revokes_it(admin, member):
    response = post_json(client_for(admin), ADMIN_TOKENS, {"username": member.user.username, "name": "backend",
                                                           "expires_in_days": 7})
    assert response.status_code == 201
    body = response.json()
    assert (body["username"], body["platform_key"], body["name"]) == (member.user.username, "acme", "backend")
    assert response["Location"] == f"{ADMIN_TOKENS}{body['id']}/"
    token = ApiToken.objects.get(pk=body["id"])
    assert token.created_by_id == admin.user.pk
    assert client_for(token=body["key"]).get(ACCOUNT_URL).json()["account_id"] == str(member.account.id)

    assert client_for(admin).delete(f"{ADMIN_TOKENS}{body['id']}/").status_code == 204
    assert client_for(token=body["key"]).get(ACCOUNT_URL).status_code == 401
    # the member's own unscoped token is usable in acme: the admin may revoke it too
    assert client_for(admin).delete(f"{ADMIN_TOKENS}{token_of(member.token).pk}/").status_code == 204
    assert client_for(member).get(ACCOUNT_URL).status_code == 401


@pytest.mark.parametrize("username", ["nobody", "outsider-user"])
def test_an_admin_cannot_issue_a_token_for_a_non_member(admin, outsider, username):
    name = outsider.user.username if username == "outsider-user" else username
    before = db_snapshot()
    error_of(post_json(client_for(admin), ADMIN_TOKENS, {"username": name}), 404, "member_not_found")
    assert db_snapshot() == before


def test_an_admin_cannot_revoke_another_platforms_token(admin, outsider):
    error_of(client_for(admin).delete(f"{ADMIN_TOKENS}{token_of(outsider.token).pk}/"), 404, "api_token_not_found")
    assert client_for(outsider).get(ACCOUNT_URL).status_code == 200


def test_members_may_not_use_the_admin_endpoints(member, other_member):
    error_of(client_for(member).get(ADMIN_TOKENS), 403, "admin_required")
    error_of(post_json(client_for(member), ADMIN_TOKENS, {"username": other_member.user.username}), 403,
             "admin_required")
    error_of(client_for(member).delete(f"{ADMIN_TOKENS}{token_of(other_member.token).pk}/"), 403, "admin_required")
    assert client_for(other_member).get(ACCOUNT_URL).status_code == 200


def test_anonymous_callers_are_refused(db):
    assert client_for().get(TOKENS).status_code == 401
    assert post_json(client_for(), TOKENS, {}).status_code == 401
    assert ApiToken.objects.count() == 0


# --- the command line and Django admin ---------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("api_token", *args, stdout=out)
    return out.getvalue()


def test_api_token_command_issues_lists_and_revokes(member, other_platform):
    issued = json.loads(run("issue", member.user.username, "--platform", "acme", "--name", "ops",
                            "--expires-in-days", "2"))
    assert issued["platform_key"] == "acme" and issued["name"] == "ops" and len(issued["key"]) == 40
    assert client_for(token=issued["key"]).get(ACCOUNT_URL).status_code == 200
    rows = [json.loads(line) for line in run("list", "--user", member.user.username).splitlines()]
    assert [r["id"] for r in rows] == [issued["id"], token_of(member.token).pk]
    assert all("key" not in r for r in rows)
    assert json.loads(run("revoke", str(issued["id"]))) == {"id": issued["id"], "revoked": True}
    assert json.loads(run("revoke", str(issued["id"]))) == {"id": issued["id"], "revoked": False}
    assert [json.loads(line)["id"] for line in run("list", "--user", member.user.username, "--active").splitlines()] \
        == [token_of(member.token).pk]
    assert client_for(token=issued["key"]).get(ACCOUNT_URL).status_code == 401


@pytest.mark.parametrize("args, message", [
    (["issue", "nobody"], "no user"),
    (["issue", "{member}", "--platform", "nope"], "no platform"),
    (["issue", "{member}", "--platform", "globex"], "not a member"),
    (["issue", "{member}", "--expires-in-days", "0"], "--expires-in-days"),
    (["revoke", "999999"], "no token"),
])
def test_api_token_command_refuses_clearly(member, other_platform, args, message):
    before = ApiToken.objects.count()
    with pytest.raises(CommandError, match=message):
        run(*[a.format(member=member.user.username) for a in args])
    assert ApiToken.objects.count() == before


def test_django_admin_lists_tokens_without_keys_and_revokes_them(browser, member):
    page = browser.get("/admin/accounts/apitoken/")
    assert page.status_code == 200
    token = token_of(member.token)
    assert token.prefix in page.text and token.digest not in page.text
    response = browser.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [token.pk]},
                            follow=True)
    assert response.status_code == 200 and "1 token(s) revoked." in response.text
    assert token_of(member.token).revoked_at is not None


def test_revoking_is_idempotent_in_the_service(member):
    token = token_of(member.token)
    assert api_token_revoke(token=token) is True
    first = token.revoked_at
    assert api_token_revoke(token=token) is False
    token.refresh_from_db()
    assert token.revoked_at == first


# --- the migration: keys of rest_framework.authtoken keep working ---------------------------------------------------


BEFORE = [("accounts", "0006_login_failure_purge_index")]


def _migrate(targets) -> None:  # noqa: ANN001
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_migration_keeps_existing_keys_working_and_drops_the_clear_ones(platform):
    member = make_member(platform, "legacy", credits="2")
    ApiToken.objects.all().delete()
    _migrate(BEFORE)
    try:
        legacy_key = "0123456789abcdef0123456789abcdef01234567"
        with connection.cursor() as cursor:  # rest_framework.authtoken's table, as it was
            cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz NOT NULL, "
                           "user_id integer NOT NULL UNIQUE REFERENCES auth_user(id))")
            cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [legacy_key, member.user.pk])
    finally:
        _migrate(None)

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('authtoken_token')")
        assert cursor.fetchone()[0] is None  # no key is stored in clear any more
    token = ApiToken.objects.get()
    assert (token.user_id, token.prefix, token.digest) == (member.user.pk, legacy_key[:8], secret_digest(legacy_key))
    assert token.platform_id is None and token.expires_at is None
    assert client_for(token=legacy_key).get(ACCOUNT_URL).json()["available_credits"] == "2.00"


# --- query counts (as tests/test_query_counts.py pins the other operations') -----------------------------------


QUERIES = {
    "billing_tokens_list": 1,
    "billing_tokens_create": 1,
    "billing_tokens_retrieve": 1,
    "billing_tokens_destroy": 2,
    "billing_admin_tokens_list": 1,
    "billing_admin_tokens_create": 2,
    "billing_admin_tokens_retrieve": 1,
    "billing_admin_tokens_destroy": 2,
}


@pytest.mark.parametrize("rows", [1, 12])
def test_listings_cost_the_same_with_few_tokens_and_many(django_assert_num_queries, admin, member, rows):
    for _ in range(rows):
        api_token_issue(user=member.user)
    with django_assert_num_queries(QUERIES["billing_tokens_list"]):
        assert client_for(member).get(TOKENS).json()["count"] == rows + 1
    with django_assert_num_queries(QUERIES["billing_admin_tokens_list"]):
        assert client_for(admin).get(ADMIN_TOKENS).json()["count"] == rows + 2


def test_each_operation_costs_its_count(django_assert_num_queries, admin, member):
    with django_assert_num_queries(QUERIES["billing_tokens_create"]):
        own = post_json(client_for(member), TOKENS, {}).json()["id"]
    with django_assert_num_queries(QUERIES["billing_tokens_retrieve"]):
        assert client_for(member).get(f"{TOKENS}{own}/").status_code == 200
    with django_assert_num_queries(QUERIES["billing_tokens_destroy"]):
        assert client_for(member).delete(f"{TOKENS}{own}/").status_code == 204
    with django_assert_num_queries(QUERIES["billing_admin_tokens_create"]):
        issued = post_json(client_for(admin), ADMIN_TOKENS, {"username": member.user.username}).json()["id"]
    with django_assert_num_queries(QUERIES["billing_admin_tokens_retrieve"]):
        assert client_for(admin).get(f"{ADMIN_TOKENS}{issued}/").status_code == 200
    with django_assert_num_queries(QUERIES["billing_admin_tokens_destroy"]):
        assert client_for(admin).delete(f"{ADMIN_TOKENS}{issued}/").status_code == 204
