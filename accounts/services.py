"""Writes for platforms and memberships.

A platform and each member get what higher apps keep for them (credits: their credit account) through
``holder_handlers``: those apps register a handler from their ``AppConfig.ready()``; accounts imports none of them
(README, "Architecture")."""

from __future__ import annotations

import ipaddress
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.errors import LoginAttemptsExceeded, MemberNotFound, SignInLinkInvalid
from accounts.models import ApiToken, LoginFailure, Membership, Platform, Role, SignInLink, secret_digest

# Called with (platform, user) for every member added, and (platform, None) for every platform created, inside the
# transaction that writes them. Registered by higher apps (credits: ``account_ensure``).
HolderHandler = Callable[..., object]
holder_handlers: list[HolderHandler] = []


def holder_handler_register(handler: HolderHandler) -> None:
    if handler not in holder_handlers:
        holder_handlers.append(handler)


def _holder_ready(*, platform: Platform, user: AbstractBaseUser | None) -> None:
    for handler in holder_handlers:
        handler(platform=platform, user=user)


@transaction.atomic
def platform_create(*, platform_key: str, name: str | None = None) -> tuple[Platform, bool]:
    """Creates the platform (and, through ``holder_handlers``, its own credit account); idempotent (an existing platform is kept,
    its name updated when one is given)."""
    platform, created = Platform.objects.get_or_create(
        platform_key=platform_key, defaults={"name": name or platform_key}
    )
    if not created and name and platform.name != name:
        platform.name = name
        platform.save(update_fields=["name"])
    _holder_ready(platform=platform, user=None)
    return platform, created


@transaction.atomic
def member_add(
    *, platform: Platform, username: str, role: str = Role.MEMBER, email: str | None = None,
    password: str | None = None, issue_token: bool = True,
) -> tuple[Membership, IssuedToken | None]:
    """Creates the user if needed, sets the role, and gives them (through ``holder_handlers``) a credit account.
    A user without a live API token gets one (unless ``issue_token`` is false), returned with its key (shown this
    once); else None.
    ``password``, when given, becomes the user's password (for ``POST /api/auth/jwt/``)."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(Role.values)}")
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": email or ""})
    if email and user.email != email:
        user.email = email
        user.save(update_fields=["email"])
    if password is not None:
        user.set_password(password)
        user.save(update_fields=["password"])
    membership, created = Membership.objects.get_or_create(platform=platform, user=user, defaults={"role": role})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    _holder_ready(platform=platform, user=user)
    return membership, api_token_ensure(user=user) if issue_token else None


def membership_saved(*, membership: Membership) -> None:
    """Called after a membership is saved elsewhere (Django admin): give it what higher apps keep for members."""
    _holder_ready(platform=membership.platform, user=membership.user)


@transaction.atomic
def operator_ensure(*, username: str) -> tuple[AbstractBaseUser, IssuedToken | None]:
    """Makes ``username`` an operator (a Django superuser: offers AI plans to every platform), creating the user
    if needed (with no password: it signs in with its API token, or an operator sets one); returns the user and,
    when they had no live API token, a new one (its key shown this once). Idempotent."""
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username)
    if not (user.is_superuser and user.is_staff and user.is_active):
        user.is_superuser = user.is_staff = user.is_active = True
        if not user.password:
            user.set_unusable_password()
        user.save()
    return user, api_token_ensure(user=user)


# --- failed logins (POST /api/auth/jwt/) ------------------------------------------------------------------


def client_address(meta: Mapping[str, Any]) -> str | None:
    """The client's IP address, for the per-address login limit: ``REMOTE_ADDR``, or behind
    ``TRUSTED_PROXY_COUNT`` proxies the address the nearest of them saw (that many entries from the right of
    ``X-Forwarded-For``: the ones further left, the client may have written). None when it is not an IP address."""
    raw = meta.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        hops = [hop.strip() for hop in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",") if hop.strip()]
        raw = hops[-proxies] if len(hops) >= proxies else None
    try:
        return str(ipaddress.ip_address(str(raw).split("%", 1)[0])) if raw else None
    except ValueError:
        return None


def login_failures_check(*, username: str, ip: str | None, now: datetime) -> None:
    """429 ``login_attempts_exceeded`` when ``username`` failed ``JWT_LOGIN_FAILURES_PER_USERNAME`` times, or the
    address ``ip`` ``JWT_LOGIN_FAILURES_PER_IP`` times, in the window before ``now`` (``JWT_LOGIN_WINDOW_MINUTES``);
    ``Retry-After`` is the longest wait of the limits reached. Checked before the password: a locked-out username
    learns nothing from a guess. Writes nothing."""
    window = timedelta(minutes=settings.JWT_LOGIN_WINDOW_MINUTES)
    since = now - window
    limits = [(Q(username=username.lower()), settings.JWT_LOGIN_FAILURES_PER_USERNAME)]
    if ip:
        limits.append((Q(ip=ip), settings.JWT_LOGIN_FAILURES_PER_IP))
    waits = []
    for condition, limit in limits:
        times = list(LoginFailure.objects.filter(condition, created_at__gt=since)
                     .order_by("-created_at").values_list("created_at", flat=True)[:limit])
        if len(times) >= limit:
            waits.append(max(1, math.ceil((times[-1] + window - now).total_seconds())))
    if waits:
        raise LoginAttemptsExceeded(retry_after=max(waits))


def login_failure_record(*, username: str, ip: str | None, now: datetime) -> None:
    """Counts one failed login (its own transaction, committed whatever follows), and forgets the failures older
    than the window, every username's (the table holds one window of failures)."""
    window = timedelta(minutes=settings.JWT_LOGIN_WINDOW_MINUTES)
    with transaction.atomic(durable=True):
        LoginFailure.objects.filter(created_at__lte=now - window).delete()
        LoginFailure.objects.create(username=username.lower()[:150], ip=ip or None, created_at=now)


# --- sign-in links to the billing page ---------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return secret_digest(token)


def sign_in_link_create(
    *, platform: Platform, username: str, actor: AbstractBaseUser | None, now: datetime,
    lifetime: timedelta | None = None,
) -> tuple[SignInLink, str]:
    """A single-use sign-in link for the platform's member ``username``, valid ``lifetime`` (default
    ``SIGN_IN_LINK_MINUTES``): the row and the token (shown once; only its hash is kept). 404 ``member_not_found``
    for anyone else."""
    user = get_user_model().objects.filter(
        username=username, is_active=True, memberships__platform=platform
    ).first()
    if user is None:
        raise MemberNotFound(details={"username": username})
    token = secrets.token_urlsafe(32)
    link = SignInLink.objects.create(
        token_hash=_token_hash(token), user=user, platform=platform, created_by=actor, created_at=now,
        expires_at=now + (lifetime or timedelta(minutes=settings.SIGN_IN_LINK_MINUTES)),
    )
    return link, token


def sign_in_link_use(*, token: str, now: datetime) -> tuple[AbstractBaseUser, Platform]:
    """The member and platform of an unused, unexpired link, which is used up by this call (one statement: two
    concurrent uses cannot both win); 410 ``sign_in_link_invalid`` otherwise, also when the member has since left
    the platform or been deactivated."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        raise SignInLinkInvalid()
    used = SignInLink.objects.filter(
        token_hash=_token_hash(token), used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if not used:
        raise SignInLinkInvalid()
    link = SignInLink.objects.select_related("user", "platform").get(token_hash=_token_hash(token))
    user, platform = link.user, link.platform
    if not user.is_active or not Membership.objects.filter(user=user, platform=platform).exists():
        raise SignInLinkInvalid()
    return user, platform


# --- API tokens (Authorization: Token <key>) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just issued, and its key: the only time the key exists outside its holder's hands."""

    token: ApiToken
    key: str


def api_token_issue(
    *, user: AbstractBaseUser, platform: Platform | None = None, name: str = "", expires_at: datetime | None = None,
    actor: AbstractBaseUser | None = None, now: datetime | None = None,
) -> IssuedToken:
    """A new API token of ``user`` (scoped to ``platform`` when given, expiring at ``expires_at`` when given): 160
    random bits as 40 hexadecimal digits, of which only the SHA-256 is stored."""
    key = secrets.token_hex(20)
    token = ApiToken.objects.create(
        digest=secret_digest(key), prefix=key[:8], name=name, user=user, platform=platform, created_by=actor,
        created_at=now or timezone.now(), expires_at=expires_at,
    )
    return IssuedToken(token=token, key=key)


def api_token_ensure(*, user: AbstractBaseUser) -> IssuedToken | None:
    """A first API token for ``user`` when they hold no live one (not revoked, not expired); else None."""
    live = ApiToken.objects.filter(user=user, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
    return None if live.exists() else api_token_issue(user=user)


def api_token_revoke(*, token: ApiToken, now: datetime | None = None) -> bool:
    """Revokes ``token`` from its next use on; whether it was live (revoking twice changes nothing)."""
    now = now or timezone.now()
    revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    if revoked:
        token.revoked_at = now
    return bool(revoked)
