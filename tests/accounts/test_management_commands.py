"""create_platform, add_member, seed_demo and verify_ledger, run with call_command."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken, Membership, Platform, secret_digest
from credits.models import CreditAccount, LedgerEntry
from credits.services import credits_debit, credits_grant
from tests.api_helpers import ACCOUNT_URL
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def run(*args: str, **options) -> str:  # noqa: ANN003
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def json_line(output: str) -> dict:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return json.loads(lines[0])


# --- create_platform --------------------------------------------------------------------------------------


def test_create_platform_creates_it_and_its_account():
    data = json_line(run("create_platform", "initech", "--name", "Initech"))
    assert data == {"platform_key": "initech", "name": "Initech", "created": True}
    platform = Platform.objects.get(platform_key="initech")
    assert platform.name == "Initech"
    pool = CreditAccount.objects.get(platform=platform, user__isnull=True)
    assert pool.balance == Decimal("0")


def test_create_platform_is_idempotent_and_updates_the_name():
    first = json_line(run("create_platform", "initech"))
    assert first == {"platform_key": "initech", "name": "initech", "created": True}
    again = json_line(run("create_platform", "initech", "--name", "Initech Corp"))
    assert again == {"platform_key": "initech", "name": "Initech Corp", "created": False}
    same = json_line(run("create_platform", "initech"))
    assert same == {"platform_key": "initech", "name": "Initech Corp", "created": False}
    assert Platform.objects.filter(platform_key="initech").count() == 1
    assert CreditAccount.objects.filter(platform__platform_key="initech").count() == 1


@pytest.mark.parametrize("key", ["Bad Key", "UPPER", "-leading-dash", "a" * 64, "", "dots.not.allowed"])
def test_create_platform_refuses_a_bad_key(key):
    with pytest.raises(CommandError):
        run("create_platform", key)
    assert not Platform.objects.exists()


# --- add_member ---------------------------------------------------------------------------------------------


def test_add_member_prints_one_json_line_with_a_working_token(platform):
    output = run("add_member", "acme", "alice", "--role", "admin", "--email", "alice@example.com")
    data = json_line(output)
    assert set(data) == {"username", "platform_key", "role", "token"}
    user = get_user_model().objects.get(username="alice")
    assert data == {
        "username": "alice",
        "platform_key": "acme",
        "role": "admin",
        "token": data["token"],
    }
    token = ApiToken.objects.get(user=user)
    assert (token.digest, token.prefix) == (secret_digest(data["token"]), data["token"][:8])  # only its hash kept
    assert user.email == "alice@example.com"
    membership = Membership.objects.get(platform=platform, user=user)
    assert membership.role == "admin"
    assert CreditAccount.objects.filter(platform=platform, user=user).count() == 1
    # the printed token works against the API
    response = client_for(token=data["token"]).get(ACCOUNT_URL)
    assert response.status_code == 200
    assert response.json()["account_id"] == str(CreditAccount.objects.get(platform=platform, user=user).id)


def test_add_member_defaults_to_member(platform):
    assert json_line(run("add_member", "acme", "bob"))["role"] == "member"
    assert Membership.objects.get(user__username="bob").role == "member"


def test_add_member_is_idempotent_and_updates_the_role(platform):
    first = json_line(run("add_member", "acme", "alice", "--role", "member"))
    credits_grant(account_id=CreditAccount.objects.get(user__username="alice").id, amount=Decimal("4"),
                  description="kept")
    second = json_line(run("add_member", "acme", "alice", "--role", "owner", "--email", "a@example.com"))
    assert first["token"] and second["token"] is None  # the key was shown once; the user keeps it
    assert (first["role"], second["role"]) == ("member", "owner")
    user = get_user_model().objects.get(username="alice")
    assert Membership.objects.filter(user=user).count() == 1
    assert Membership.objects.get(user=user).role == "owner"
    assert user.email == "a@example.com"
    assert ApiToken.objects.filter(user=user).count() == 1
    accounts = CreditAccount.objects.filter(platform=platform, user=user)
    assert accounts.count() == 1
    assert accounts.get().balance == Decimal("4")  # the account (and its credits) survive
    third = json_line(run("add_member", "acme", "alice", "--role", "owner"))
    assert third == second
    assert get_user_model().objects.get(username="alice").email == "a@example.com"  # not blanked


def test_add_member_to_a_second_platform_keeps_one_token(platform, other_platform):
    acme = json_line(run("add_member", "acme", "sam", "--role", "member"))
    globex = json_line(run("add_member", "globex", "sam", "--role", "admin"))
    assert acme["token"] and globex["token"] is None
    assert ApiToken.objects.filter(user__username="sam").count() == 1
    assert (acme["platform_key"], globex["platform_key"]) == ("acme", "globex")
    assert set(Membership.objects.filter(user__username="sam").values_list("platform__platform_key", "role")) == {
        ("acme", "member"), ("globex", "admin"),
    }
    assert CreditAccount.objects.filter(user__username="sam").count() == 2


def test_add_member_password_lets_the_user_obtain_a_jwt(platform):
    data = json_line(run("add_member", "acme", "alice", "--password", "correct horse"))
    assert set(data) == {"username", "platform_key", "role", "token"}  # the password is not echoed
    user = get_user_model().objects.get(username="alice")
    assert user.check_password("correct horse")
    response = APIClient().post("/api/auth/jwt/", {"username": "alice", "password": "correct horse"}, format="json")
    assert response.status_code == 200, response.content
    access = response.json()["access"]
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert bearer.get(ACCOUNT_URL).status_code == 200


def test_add_member_password_from_stdin_and_kept_when_not_given(platform):
    run("add_member", "acme", "alice", "--password", "-", stdin=StringIO("from stdin\n"))
    assert get_user_model().objects.get(username="alice").check_password("from stdin")
    run("add_member", "acme", "alice", "--role", "admin")  # no --password: unchanged
    assert get_user_model().objects.get(username="alice").check_password("from stdin")
    run("add_member", "acme", "alice", "--password", "changed")
    assert get_user_model().objects.get(username="alice").check_password("changed")


def test_add_member_refuses_an_empty_password(platform):
    with pytest.raises(CommandError, match="password"):
        run("add_member", "acme", "alice", "--password", "")
    assert not get_user_model().objects.filter(username="alice").exists()


def test_add_member_without_password_gives_no_jwt(platform):
    run("add_member", "acme", "alice")
    for password in ("x", "alice", "!"):
        response = APIClient().post("/api/auth/jwt/", {"username": "alice", "password": password}, format="json")
        assert response.status_code == 401, response.content


def test_add_member_to_an_unknown_platform_fails(db):
    with pytest.raises(CommandError, match="nowhere"):
        run("add_member", "nowhere", "alice")
    assert not get_user_model().objects.filter(username="alice").exists()


@pytest.mark.parametrize("role", ["superhero", "OWNER", ""])
def test_add_member_with_a_bad_role_fails(platform, role):
    with pytest.raises(CommandError):
        run("add_member", "acme", "alice", "--role", role)
    assert not get_user_model().objects.filter(username="alice").exists()
    assert not Membership.objects.exists()


def test_add_member_with_an_overlong_username_fails(platform):
    with pytest.raises(CommandError):
        run("add_member", "acme", "u" * 151)
    assert not Membership.objects.exists()


# --- seed_demo ----------------------------------------------------------------------------------------------


def test_seed_demo_loads_the_demo_platform_and_is_idempotent():
    output = run("seed_demo")
    lines = output.strip().splitlines()
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(r["username"], r["role"]) for r in rows] == [
        ("demo-owner", "owner"), ("demo-admin", "admin"), ("alice", "member"), ("bob", "member"),
    ]
    assert all(r["platform_key"] == "demo" for r in rows)
    tokens = {r["username"]: r["token"] for r in rows}
    balances = {
        a.user.username: a.balance
        for a in CreditAccount.objects.filter(platform__platform_key="demo", user__isnull=False).select_related("user")
    }
    assert balances == {"demo-owner": 0, "demo-admin": 0, "alice": Decimal("25"), "bob": Decimal("10")}
    entries = LedgerEntry.objects.count()

    again = [json.loads(line) for line in run("seed_demo").strip().splitlines() if line.startswith("{")]
    # Keys are shown once: each run prints new ones and revokes the last run's.
    assert [r["username"] for r in again] == list(tokens)
    assert not set(tokens.values()) & {r["token"] for r in again}
    assert client_for(token=tokens["alice"]).get(ACCOUNT_URL).status_code == 401
    tokens = {r["username"]: r["token"] for r in again}
    assert ApiToken.objects.filter(user__username="alice", revoked_at__isnull=True).count() == 1
    assert LedgerEntry.objects.count() == entries
    assert CreditAccount.objects.get(user__username="alice").balance == Decimal("25")

    alice = client_for(token=tokens["alice"]).get(ACCOUNT_URL).json()
    assert (alice["platform_key"], alice["available_credits"]) == ("demo", "25.00")
    admin_view = client_for(token=tokens["demo-admin"]).get("/api/billing/admin/credits/transactions/").json()
    assert admin_view["count"] == 2


# --- verify_ledger ------------------------------------------------------------------------------------------


def test_verify_ledger_passes_on_a_healthy_ledger(member, other_member, outsider):
    credits_debit(account_id=member.account.id, amount=Decimal("1.5"), description="call")
    output = run("verify_ledger")
    assert output.strip() == f"checked {CreditAccount.objects.count()} account(s), 0 with problems"
    only_acme = run("verify_ledger", "--platform", "acme")
    assert only_acme.strip() == (
        f"checked {CreditAccount.objects.filter(platform__platform_key='acme').count()} account(s), 0 with problems"
    )


def test_verify_ledger_reports_an_account_that_disagrees_with_its_ledger(member, other_member):
    # Corrupt the account row (not the ledger, which refuses changes) the way a stray UPDATE would.
    CreditAccount.objects.filter(pk=member.account.id).update(balance=Decimal("90"))
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="ledger invariants violated"):
        call_command("verify_ledger", stdout=out, stderr=err)
    assert out.getvalue().strip() == f"checked {CreditAccount.objects.count()} account(s), 1 with problems"
    assert str(member.account.id) in err.getvalue()
    assert "balance 90" in err.getvalue()
    assert str(other_member.account.id) not in err.getvalue()
