"""Shared fixtures: platforms, members with roles, authenticated API clients, funded accounts.

Everything runs on real PostgreSQL (the embedded server unless DATABASE_URL is set)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import Membership, Platform, Role
from accounts.services import api_token_issue, member_add, platform_create
from credits.models import CreditAccount
from credits.selectors import account_for
from credits.services import credits_grant


@dataclass
class Member:
    membership: Membership
    token: str
    account: CreditAccount

    @property
    def user(self):  # noqa: ANN201
        return self.membership.user

    @property
    def platform(self) -> Platform:
        return self.membership.platform


def make_platform(key: str = "acme", name: str | None = None) -> Platform:
    platform, _ = platform_create(platform_key=key, name=name)
    return platform


# The key each user's first API token was issued with (keys are shown once).
_KEYS: dict[int, str] = {}


def make_member(platform: Platform, username: str, role: str = Role.MEMBER, credits: str | None = None) -> Member:
    membership, issued = member_add(platform=platform, username=username, role=role)
    if issued is not None:
        _KEYS[membership.user_id] = issued.key
    # A user already in another platform keeps the key they were given then (ids are never reused).
    token = _KEYS.get(membership.user_id) or api_token_issue(user=membership.user).key
    account = account_for(platform=platform, user=membership.user)
    if credits:
        credits_grant(account_id=account.id, amount=Decimal(credits), description="test funds")
        account.refresh_from_db()
    return Member(membership=membership, token=token, account=account)


def client_for(member: Member | None = None, *, token: str | None = None, platform_key: str | None = None) -> APIClient:
    client = APIClient()
    key = token or (member.token if member else None)
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    if platform_key:
        client.defaults["HTTP_X_PLATFORM_KEY"] = platform_key
    return client


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):  # noqa: ANN001, ANN202
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):  # noqa: ANN001, ANN202
    # Tests send webhooks and logins from one address, faster than any client would, and transactional tests keep
    # their counts: the limits are tested on their own (tests/accounts/test_rate_limits.py).
    settings.RATE_LIMITS = {}


@pytest.fixture
def platform(db) -> Platform:  # noqa: ANN001
    return make_platform("acme", "Acme AI")


@pytest.fixture
def other_platform(db) -> Platform:  # noqa: ANN001
    return make_platform("globex", "Globex")


@pytest.fixture
def owner(platform: Platform) -> Member:
    return make_member(platform, "olivia", Role.OWNER)


@pytest.fixture
def admin(platform: Platform) -> Member:
    return make_member(platform, "adam", Role.ADMIN)


@pytest.fixture
def member(platform: Platform) -> Member:
    return make_member(platform, "mia", Role.MEMBER, credits="100.00")


@pytest.fixture
def other_member(platform: Platform) -> Member:
    return make_member(platform, "max", Role.MEMBER, credits="50.00")


@pytest.fixture
def outsider(other_platform: Platform) -> Member:
    """An admin of another platform."""
    return make_member(other_platform, "gina", Role.ADMIN, credits="10.00")


@pytest.fixture
def api():  # noqa: ANN201
    return client_for


@pytest.fixture
def operator(db):  # noqa: ANN001, ANN201
    """A Django superuser (an operator): the admin site's user."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")


@pytest.fixture
def browser(operator):  # noqa: ANN001, ANN201
    """The Django admin site, signed in as ``operator``."""
    from django.test import Client

    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture(scope="session", autouse=True)
def _lazy_static_files():
    """WhiteNoise scans every static file when its middleware starts, which every test client does; in tests
    it finds them on request instead (its autorefresh mode)."""
    from django.conf import settings

    settings.WHITENOISE_AUTOREFRESH = True


@dataclass(frozen=True)
class LedgerClock:
    """The time new ledger rows of chosen accounts carry, whatever the real clock says.

    The ledger stamps a row with the later of PostgreSQL's ``clock_timestamp()`` and its account's
    ``last_entry_at`` (so ``created_at`` never goes back along an account's sequence). ``pin`` sets
    ``last_entry_at`` to ``moment``, which the real clock cannot reach during a run: every row written on
    those accounts afterwards carries exactly ``moment``, so assertions about its day never depend on when the
    test runs (no skip at midnight UTC)."""

    moment: datetime

    def pin(self, *accounts: CreditAccount) -> None:
        CreditAccount.objects.filter(pk__in=[a.pk for a in accounts]).update(last_entry_at=self.moment)


@pytest.fixture
def ledger_clock() -> LedgerClock:
    """Noon UTC the day after tomorrow: more than a day ahead of the real clock, on one UTC day."""
    day = datetime.now(UTC).date() + timedelta(days=2)
    return LedgerClock(moment=datetime.combine(day, time(12), tzinfo=UTC))
