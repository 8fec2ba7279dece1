"""JWT Bearer authentication: obtain, refresh and verify (/api/auth/jwt/), tokens scoped to one platform, accepted on
every endpoint beside Token and session auth, revoked with the membership or the user's activity."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import timedelta

import jwt as pyjwt
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import Membership, Role
from tests.api_helpers import (
    ACCOUNT_URL,
    ADMIN_TRANSACTIONS_URL,
    MANUAL_URL,
    TRANSACTIONS_URL,
    db_snapshot,
    error_of,
    post_json,
)
from tests.conftest import Member, client_for, make_member

# The HS512 forgery signs with the (50-byte) key: PyJWT warns that it is short for SHA-512.
pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")]

OBTAIN_URL = "/api/auth/jwt/"
REFRESH_URL = "/api/auth/jwt/refresh/"
VERIFY_URL = "/api/auth/jwt/verify/"
PASSWORD = "correct horse battery"


def with_password(member: Member, password: str = PASSWORD) -> Member:
    member.user.set_password(password)
    member.user.save(update_fields=["password"])
    return member


def obtain(username: str, password: str = PASSWORD, **extra: str):  # noqa: ANN201
    return post_json(APIClient(), OBTAIN_URL, {"username": username, "password": password, **extra})


def pair_for(member: Member, **extra: str) -> dict[str, str]:
    with_password(member)
    response = obtain(member.user.username, **extra)
    assert response.status_code == 200, response.content
    return response.json()


def bearer(access: str, platform_key: str | None = None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    if platform_key:
        client.defaults["HTTP_X_PLATFORM_KEY"] = platform_key
    return client


def claims(token: str) -> dict:
    return pyjwt.decode(token, options={"verify_signature": False})


def snapshot() -> tuple:
    users = tuple(get_user_model().objects.order_by("pk").values_list("pk", "last_login", "is_active", "password"))
    return db_snapshot(), users, Membership.objects.count()


def refused(response, code: str = "authentication_failed") -> dict:  # noqa: ANN001
    error = error_of(response, 401, code)
    assert response.has_header("WWW-Authenticate")
    return error


# --- obtain ---------------------------------------------------------------------------------------------------


def test_obtain_gives_a_pair_scoped_to_the_users_only_platform(member):
    before = snapshot()
    pair = pair_for(member)
    assert set(pair) == {"access", "refresh"}
    access, refresh = claims(pair["access"]), claims(pair["refresh"])
    assert (access["platform"], refresh["platform"]) == ("acme", "acme")
    assert access["user_id"] == refresh["user_id"] == str(member.user.pk)
    assert (access["token_type"], refresh["token_type"]) == ("access", "refresh")
    assert access["exp"] - access["iat"] == settings.JWT_ACCESS_MINUTES * 60 == 15 * 60
    assert refresh["exp"] - refresh["iat"] == settings.JWT_REFRESH_DAYS * 86400 == 7 * 86400
    assert pyjwt.get_unverified_header(pair["access"])["alg"] == "HS256"
    pyjwt.decode(pair["access"], settings.JWT_SIGNING_KEY, algorithms=["HS256"])  # signed with JWT_SIGNING_KEY
    assert snapshot()[0] == before[0] and snapshot()[2] == before[2]  # nothing written (not even last_login)
    assert get_user_model().objects.get(pk=member.user.pk).last_login is None


def test_obtain_for_a_user_in_several_platforms_needs_platform_key(member, other_platform):
    make_member(other_platform, member.user.username)
    with_password(member)
    error_of(obtain(member.user.username), 400, "platform_ambiguous")
    response = obtain(member.user.username, platform_key="globex")
    assert response.status_code == 200
    assert claims(response.json()["access"])["platform"] == "globex"


@pytest.mark.parametrize("platform_key", ["globex", "nowhere", "NOT A KEY"])
def test_obtain_for_a_platform_the_user_is_not_in_is_403_and_no_token(member, other_platform, platform_key):
    with_password(member)
    response = obtain(member.user.username, platform_key=platform_key)
    error_of(response, 403, "not_a_member")
    assert "access" not in response.content.decode()


def test_an_operator_obtains_a_token_for_any_existing_platform(db, other_platform):
    user = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    error_of(obtain("root", platform_key="nowhere"), 404, "platform_not_found")
    error_of(obtain("root"), 400, "platform_ambiguous")  # in no platform: must name one
    pair = obtain("root", platform_key="globex").json()
    assert claims(pair["access"])["platform"] == "globex"
    assert bearer(pair["access"]).get(ADMIN_TRANSACTIONS_URL).status_code == 200
    error_of(bearer(pair["access"], "acme").get(ADMIN_TRANSACTIONS_URL), 403, "not_a_member")
    get_user_model().objects.filter(pk=user.pk).update(is_superuser=False)  # no longer an operator
    refused(bearer(pair["access"]).get(ADMIN_TRANSACTIONS_URL))


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong"), ("nobody", PASSWORD), ("ALICE", PASSWORD), ("alice", PASSWORD + " ")],
)
def test_bad_credentials_are_401_in_the_envelope(member, username, password):
    with_password(member)
    before = snapshot()
    error = refused(obtain(username, password))
    assert "credentials" in error["message"]
    assert snapshot() == before


def test_an_inactive_user_gets_no_token(member):
    with_password(member)
    get_user_model().objects.filter(pk=member.user.pk).update(is_active=False)
    refused(obtain(member.user.username))


@pytest.mark.parametrize(
    "body",
    [
        {},
        [],
        "null",
        '"alice"',
        "{",
        {"username": "alice"},
        {"password": PASSWORD},
        {"username": 1, "password": PASSWORD},
        {"username": "alice", "password": ["x"]},
        {"username": "alice", "password": {"x": 1}},
        {"username": "alice", "password": None},
        {"username": "alice", "password": True},
        {"username": "alice", "password": PASSWORD, "platform_key": 5},
        {"username": "alice", "password": PASSWORD, "platform_key": ""},
        {"username": "alice", "password": PASSWORD, "platform": "acme"},
        {"username": "alice", "password": PASSWORD, "extra": 1},
        {"username": "", "password": PASSWORD},
        {"username": "a" * 151, "password": PASSWORD},
        {"username": "alice", "password": "p" * 5000},
        {"username": "ali\u0000ce", "password": PASSWORD},
        '{"username": "alice", "password": "\\ud800"}',
    ],
)
def test_malformed_obtain_bodies_are_400_never_500(member, body):
    with_password(member)
    before = snapshot()
    response = post_json(APIClient(), OBTAIN_URL, body)
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert error_of(response, 400)["code"] in {"invalid", "malformed_request"}
    assert snapshot() == before


@pytest.mark.parametrize("url", [REFRESH_URL, VERIFY_URL])
@pytest.mark.parametrize("body", [{}, [], "{", {"refresh": 1, "token": 1}, {"refresh": "", "token": ""},
                                  {"refresh": None, "token": None}, {"x": "y"}])
def test_malformed_refresh_and_verify_bodies_are_400(member, url, body):
    response = post_json(APIClient(), url, body)
    assert response.status_code == 400, (response.status_code, response.content[:300])


def test_obtain_ignores_the_authorization_header(member):
    with_password(member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    response = post_json(client, OBTAIN_URL, {"username": member.user.username, "password": PASSWORD})
    assert response.status_code == 200


# --- use on the API -------------------------------------------------------------------------------------------


def test_a_jwt_works_on_member_endpoints_like_the_token(member):
    access = pair_for(member)["access"]
    mine = bearer(access).get(ACCOUNT_URL)
    assert mine.status_code == 200
    assert mine.json() == client_for(member).get(ACCOUNT_URL).json()
    assert bearer(access).get(TRANSACTIONS_URL).json() == client_for(member).get(TRANSACTIONS_URL).json()


def test_a_jwt_works_on_admin_endpoints_with_the_members_role(admin, member):
    access = pair_for(admin)["access"]
    assert bearer(access).get(ADMIN_TRANSACTIONS_URL).status_code == 200
    response = post_json(bearer(access), MANUAL_URL, {"account_id": str(member.account.id), "amount": "5",
                                                      "description": "by jwt"})
    assert response.status_code in (200, 201), response.content
    members_access = pair_for(member)["access"]
    error_of(bearer(members_access).get(ADMIN_TRANSACTIONS_URL), 403, "admin_required")


def test_a_jwt_costs_the_same_queries_as_a_token(member):
    access = pair_for(member)["access"]
    bearer(access).get(ACCOUNT_URL)
    client_for(member).get(ACCOUNT_URL)  # both statements prepared
    with CaptureQueriesContext(connection) as by_token:
        assert client_for(member).get(ACCOUNT_URL).status_code == 200
    with CaptureQueriesContext(connection) as by_jwt:
        assert bearer(access).get(ACCOUNT_URL).status_code == 200
    assert len(by_jwt) == len(by_token)


def test_a_jwt_acts_in_its_platform_only(member, other_platform):
    make_member(other_platform, member.user.username)
    with_password(member)
    globex = obtain(member.user.username, platform_key="globex").json()["access"]
    acme = obtain(member.user.username, platform_key="acme").json()["access"]
    # No header: the token's platform, although the user is in two (a Token would be 400 platform_ambiguous).
    error_of(client_for(member).get(ACCOUNT_URL), 400, "platform_ambiguous")
    assert bearer(globex).get(ACCOUNT_URL).json()["platform_key"] == "globex"
    assert bearer(acme).get(ACCOUNT_URL).json()["platform_key"] == "acme"
    assert bearer(globex, "globex").get(ACCOUNT_URL).status_code == 200
    error = error_of(bearer(globex, "acme").get(ACCOUNT_URL), 403, "not_a_member")
    assert error["details"] == {"token_platform": "globex"}
    error_of(bearer(globex, "nowhere").get(ACCOUNT_URL), 403, "not_a_member")


def test_a_jwt_cannot_reach_another_platform_by_query(admin, other_platform):
    make_member(other_platform, admin.user.username, Role.ADMIN)
    access = pair_for(admin, platform_key="acme")["access"]
    assert bearer(access).get(ACCOUNT_URL, {"platform_key": "acme"}).status_code == 200
    response = bearer(access).get(ACCOUNT_URL, {"platform_key": "globex"})
    error_of(response, 403, "not_a_member")  # never globex's ledger


# --- refresh and verify ---------------------------------------------------------------------------------------


def test_refresh_gives_a_new_access_token_and_does_not_rotate(member):
    pair = pair_for(member)
    response = post_json(APIClient(), REFRESH_URL, {"refresh": pair["refresh"]})
    assert response.status_code == 200
    assert set(response.json()) == {"access"}
    access = response.json()["access"]
    assert claims(access)["platform"] == "acme" and claims(access)["token_type"] == "access"
    assert bearer(access).get(ACCOUNT_URL).status_code == 200
    assert post_json(APIClient(), REFRESH_URL, {"refresh": pair["refresh"]}).status_code == 200  # still valid


def test_refresh_refuses_an_access_token_and_garbage(member):
    pair = pair_for(member)
    refused(post_json(APIClient(), REFRESH_URL, {"refresh": pair["access"]}))
    refused(post_json(APIClient(), REFRESH_URL, {"refresh": "nope"}))
    refused(post_json(APIClient(), REFRESH_URL, {"refresh": pair["refresh"][:-2] + "xx"}))


def test_verify(member):
    pair = pair_for(member)
    for token in (pair["access"], pair["refresh"]):
        response = post_json(APIClient(), VERIFY_URL, {"token": token})
        assert response.status_code == 200 and response.json() == {}
    refused(post_json(APIClient(), VERIFY_URL, {"token": "a.b.c"}))
    refused(post_json(APIClient(), VERIFY_URL, {"token": expired_access(member)}))


def test_a_refresh_token_is_not_an_access_token(member):
    refused(bearer(pair_for(member)["refresh"]).get(ACCOUNT_URL))


# --- revocation -----------------------------------------------------------------------------------------------


def test_removing_the_membership_revokes_the_tokens(member):
    pair = pair_for(member)
    assert bearer(pair["access"]).get(ACCOUNT_URL).status_code == 200
    Membership.objects.filter(pk=member.membership.pk).delete()
    before = snapshot()
    error = refused(bearer(pair["access"]).get(ACCOUNT_URL))
    assert "member" in error["message"]
    refused(post_json(APIClient(), REFRESH_URL, {"refresh": pair["refresh"]}))
    refused(post_json(APIClient(), VERIFY_URL, {"token": pair["access"]}))
    assert snapshot() == before


def test_removing_one_membership_keeps_tokens_of_the_other_platform(member, other_platform):
    make_member(other_platform, member.user.username)
    with_password(member)
    acme = obtain(member.user.username, platform_key="acme").json()["access"]
    globex = obtain(member.user.username, platform_key="globex").json()["access"]
    Membership.objects.filter(pk=member.membership.pk).delete()
    refused(bearer(acme).get(ACCOUNT_URL))
    assert bearer(globex).get(ACCOUNT_URL).status_code == 200


def test_deactivating_the_user_revokes_the_tokens(member):
    pair = pair_for(member)
    get_user_model().objects.filter(pk=member.user.pk).update(is_active=False)
    refused(bearer(pair["access"]).get(ACCOUNT_URL))
    refused(post_json(APIClient(), REFRESH_URL, {"refresh": pair["refresh"]}))
    refused(post_json(APIClient(), VERIFY_URL, {"token": pair["refresh"]}))


def test_a_token_naming_no_user_is_refused(member):
    # Users are never deleted (their memberships and accounts protect them); a signed token for an unknown id.
    pair = pair_for(member)
    for kind in ("access", "refresh"):
        unknown = pyjwt.encode(dict(claims(pair[kind]), user_id=str(member.user.pk + 1000)),
                               settings.JWT_SIGNING_KEY, algorithm="HS256")
        refused(post_json(APIClient(), VERIFY_URL, {"token": unknown}))
        if kind == "access":
            refused(bearer(unknown).get(ACCOUNT_URL))
        else:
            refused(post_json(APIClient(), REFRESH_URL, {"refresh": unknown}))


# --- bad tokens -----------------------------------------------------------------------------------------------


def expired_access(member: Member) -> str:
    token = AccessToken.for_user(member.user)
    token["platform"] = "acme"
    token.set_exp(from_time=timezone.now() - timedelta(hours=1), lifetime=timedelta(minutes=15))
    return str(token)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(member: Member) -> dict[str, str]:
    good = pair_for(member)["access"]
    payload = claims(good)
    header, body, signature = good.split(".")
    forged = dict(payload, user_id=str(member.user.pk + 1000), platform="globex")
    no_platform = AccessToken.for_user(member.user)  # simplejwt's own token, without the platform claim
    expired_refresh = RefreshToken.for_user(member.user)
    expired_refresh["platform"] = "acme"
    expired_refresh.set_exp(from_time=timezone.now() - timedelta(days=30), lifetime=timedelta(days=7))
    return {
        "expired": expired_access(member),
        "tampered_signature": f"{header}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}",
        "tampered_payload": f"{header}.{_b64(forged)}.{signature}",
        "other_key": pyjwt.encode(payload, "not-the-signing-key-" * 3, algorithm="HS256"),
        "alg_none": pyjwt.encode(payload, None, algorithm="none"),
        "alg_none_signed": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{body}.{signature}",
        "hs512": pyjwt.encode(payload, settings.JWT_SIGNING_KEY, algorithm="HS512"),
        "no_platform": str(no_platform),
        "wrong_platform_key": pyjwt.encode(dict(payload, platform="Not A Key"), settings.JWT_SIGNING_KEY,
                                           algorithm="HS256"),
        "user_id_not_a_number": pyjwt.encode(dict(payload, user_id="1; drop"), settings.JWT_SIGNING_KEY,
                                             algorithm="HS256"),
        "user_id_huge": pyjwt.encode(dict(payload, user_id=str(2**70)), settings.JWT_SIGNING_KEY,
                                     algorithm="HS256"),
        "no_exp": pyjwt.encode({k: v for k, v in payload.items() if k != "exp"}, settings.JWT_SIGNING_KEY,
                               algorithm="HS256"),
        "refresh_as_access": pair_for(member)["refresh"],
        "expired_refresh": str(expired_refresh),
        "drf_token_key": member.token,
        "garbage": "garbage",
        "three_dots": "a.b.c",
        "empty_parts": "..",
        "not_json": f"{_b64({'alg': 'HS256'})[:-1]}!.{body}.{signature}",
        "huge": "a" * 3000 + "." + "b" * 3000 + "." + "c",
        "latin1": "é.é.é",
        "trailing": good + "x",
    }


BAD_TOKEN_NAMES = [
    "expired", "tampered_signature", "tampered_payload", "other_key", "alg_none", "alg_none_signed", "hs512",
    "no_platform", "wrong_platform_key", "user_id_not_a_number", "user_id_huge", "no_exp", "refresh_as_access",
    "expired_refresh", "drf_token_key", "garbage", "three_dots", "empty_parts", "not_json", "huge", "latin1",
    "trailing",
]


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
@pytest.mark.parametrize("url", [ACCOUNT_URL, ADMIN_TRANSACTIONS_URL, MANUAL_URL])
def test_a_bad_bearer_token_is_a_clear_401_and_writes_nothing(owner, member, name, url):
    token = bad_tokens(owner)[name]
    before = snapshot()
    client = bearer(token)
    if url == MANUAL_URL:
        response = post_json(client, url, {"account_id": str(member.account.id), "amount": "5", "description": "x"})
    else:
        response = client.get(url)
    error = refused(response)
    assert error["message"]
    assert snapshot() == before


@pytest.mark.parametrize("name", ["expired", "other_key", "alg_none", "tampered_signature", "garbage", "no_exp"])
def test_bad_tokens_fail_verify_and_refresh(member, name):
    token = bad_tokens(member)[name]
    refused(post_json(APIClient(), VERIFY_URL, {"token": token}))
    refused(post_json(APIClient(), REFRESH_URL, {"refresh": token}))


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", "Bearer  "])
def test_a_malformed_bearer_header_is_401(member, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    refused(client.get(ACCOUNT_URL))


def test_token_auth_is_unchanged_beside_jwt(member):
    assert client_for(member).get(ACCOUNT_URL).status_code == 200
    response = APIClient().get(ACCOUNT_URL)
    error_of(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"  # Token stays the first, advertised scheme


# --- settings ---------------------------------------------------------------------------------------------------


def _settings_in_subprocess(**env: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.JWT_SIGNING_KEY == s.SECRET_KEY, s.JWT_SIGNING_KEY, "
        "s.SIMPLE_JWT['ACCESS_TOKEN_LIFETIME'].total_seconds(), "
        "s.SIMPLE_JWT['REFRESH_TOKEN_LIFETIME'].total_seconds()]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JWT_")}
    env = {**clean, "DJANGO_SETTINGS_MODULE": "billing_service.settings", "SECRET_KEY": "s" * 40, **env}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                            check=True)
    same, key, access, refresh = json.loads(result.stdout.strip().splitlines()[-1])
    return {"same": same, "key": key, "access": access, "refresh": refresh}


def test_jwt_settings_come_from_the_environment(db):
    assert _settings_in_subprocess() == {"same": True, "key": "s" * 40, "access": 15 * 60, "refresh": 7 * 86400}
    assert _settings_in_subprocess(JWT_SIGNING_KEY="k" * 40, JWT_ACCESS_MINUTES="5", JWT_REFRESH_DAYS="1") == {
        "same": False, "key": "k" * 40, "access": 5 * 60, "refresh": 86400}


# --- brute-force limits of the login -------------------------------------------------------------------------


def test_failed_logins_are_limited_per_username_then_429_without_checking_the_password(member, settings):
    from accounts.models import LoginFailure

    settings.JWT_LOGIN_FAILURES_PER_USERNAME = 3
    with_password(member)
    for _ in range(3):
        assert obtain(member.user.username, "wrong").status_code == 401

    blocked = obtain(member.user.username.upper(), PASSWORD)  # the right password, any case of the name

    assert blocked.status_code == 429, blocked.content
    assert blocked.json()["error"]["code"] == "login_attempts_exceeded"
    assert 1 <= int(blocked["Retry-After"]) <= settings.JWT_LOGIN_WINDOW_MINUTES * 60
    assert LoginFailure.objects.filter(username=member.user.username.lower()).count() == 3  # the 429 adds none
    # Another user is not affected.
    other = with_password(make_member(member.platform, "olga"))
    assert obtain(other.user.username).status_code == 200


def test_the_limit_lifts_when_the_window_has_passed(member, settings):
    from accounts.models import LoginFailure

    settings.JWT_LOGIN_FAILURES_PER_USERNAME = 2
    with_password(member)
    for _ in range(2):
        obtain(member.user.username, "wrong")
    assert obtain(member.user.username).status_code == 429
    LoginFailure.objects.update(created_at=timezone.now() - timedelta(minutes=settings.JWT_LOGIN_WINDOW_MINUTES + 1))

    assert obtain(member.user.username).status_code == 200
    obtain(member.user.username, "wrong")  # a new failure forgets the username's old ones
    assert LoginFailure.objects.filter(username=member.user.username.lower()).count() == 1


def test_failed_logins_are_limited_per_address_across_usernames(member, settings):
    settings.JWT_LOGIN_FAILURES_PER_IP = 4
    with_password(member)
    for n in range(4):
        assert obtain(f"nobody{n}", "guess").status_code == 401

    assert obtain(member.user.username).status_code == 429
    other_address = post_json(APIClient(REMOTE_ADDR="203.0.113.9"), OBTAIN_URL,
                              {"username": member.user.username, "password": PASSWORD})
    assert other_address.status_code == 200


def test_a_successful_login_writes_nothing(member):
    from accounts.models import LoginFailure

    with_password(member)

    assert obtain(member.user.username).status_code == 200
    assert not LoginFailure.objects.exists()


def test_retry_after_is_the_longest_wait_of_the_limits_reached(member, settings):
    from accounts.models import LoginFailure

    settings.JWT_LOGIN_FAILURES_PER_USERNAME, settings.JWT_LOGIN_FAILURES_PER_IP = 2, 3
    with_password(member)
    now = timezone.now()
    LoginFailure.objects.bulk_create(
        [LoginFailure(username=member.user.username, ip="10.9.9.9", created_at=now - timedelta(minutes=14))] * 2
        + [LoginFailure(username=f"x{n}", ip="127.0.0.1", created_at=now - timedelta(minutes=1)) for n in range(3)])

    blocked = obtain(member.user.username)

    assert blocked.status_code == 429 and int(blocked["Retry-After"]) > 13 * 60


def test_old_failures_of_every_username_are_purged_by_the_next_failure(settings):
    from accounts.models import LoginFailure

    LoginFailure.objects.create(username="long-gone",
                                created_at=timezone.now() - timedelta(minutes=settings.JWT_LOGIN_WINDOW_MINUTES + 1))

    obtain("somebody", "guess")

    assert list(LoginFailure.objects.values_list("username", flat=True)) == ["somebody"]


@pytest.mark.parametrize(
    ("meta", "proxies", "address"),
    [
        ({"REMOTE_ADDR": "203.0.113.5"}, 0, "203.0.113.5"),
        ({"REMOTE_ADDR": "unix:"}, 0, None),
        ({"REMOTE_ADDR": "fe80::1%eth0"}, 0, "fe80::1"),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.7"}, 1, "198.51.100.7"),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "spoofed"}, 1, None),
        ({"REMOTE_ADDR": "10.0.0.1"}, 1, None),
    ],
)
def test_the_client_address_behind_trusted_proxies(settings, meta, proxies, address):
    from accounts.services import client_address

    settings.TRUSTED_PROXY_COUNT = proxies

    assert client_address(meta) == address


def test_a_login_from_a_non_ip_address_is_counted_without_one(member):
    response = post_json(APIClient(REMOTE_ADDR="unix:"), OBTAIN_URL, {"username": "mia", "password": "nope"})

    assert response.status_code == 401
