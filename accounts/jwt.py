"""JWT Bearer tokens (djangorestframework-simplejwt), each scoped to one platform.

A refresh token and its access tokens carry the user's id (``user_id``) and the platform they act in
(``platform``: its platform_key). They are HS256-signed with ``JWT_SIGNING_KEY`` and not stored: a token is
revoked by what it names, so every use (an API request, a refresh, a verify) checks, with the one statement token
authentication runs (``accounts.sql.user_by_id_statement``: the user and their memberships), that the user is still
active and still a member of the token's platform (an operator, a Django superuser, may hold a token for any
platform, while they stay one). Removing the membership or deactivating the user refuses the next request.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework import exceptions
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken, Token

from accounts.models import PLATFORM_KEY_RE, Platform
from accounts.selectors import memberships_attach, memberships_attached
from accounts.sql import user_by_id_statement
from billing_service.db import server_bound_cursor

PLATFORM_CLAIM = "platform"
# A compact JWS (header.payload.signature, base64url) of a sane size: anything else is refused without decoding.
MAX_TOKEN_LENGTH = 4096
JWT_RE = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# PostgreSQL's bigint: an id outside it names no user (and would be an error, not a miss, in the statement).
_MAX_ID = 2**63 - 1
_USER_ID_RE = re.compile(r"[1-9][0-9]{0,18}")
# Where the token's platform is kept on the request's user (read by ``token_platform``).
_TOKEN_PLATFORM_ATTR = "_billing_token_platform"


def token_parse(raw: str | bytes, token_class: type[Token]) -> Token:
    """The validated token (signature, expiry and type), or a 401 (``authentication_failed``)."""
    raw_bytes = raw.encode("ascii", "replace") if isinstance(raw, str) else raw
    if len(raw_bytes) > MAX_TOKEN_LENGTH or not JWT_RE.fullmatch(raw_bytes):
        raise exceptions.AuthenticationFailed("Invalid token: not a JWT.")
    try:
        return token_class(raw_bytes)
    except TokenError as exc:  # a bad signature, another algorithm, expired, the wrong type, a missing claim
        raise exceptions.AuthenticationFailed(f"Invalid token: {exc.args[0] if exc.args else 'refused'}.") from None


def token_holder(token: Token) -> AbstractBaseUser:
    """The user a valid token names, with their memberships attached (one statement), if they are still active
    and still a member of the token's platform (or an operator); else a 401. The user remembers the token's
    platform (``token_platform``): tenancy acts in it and in no other."""
    user_id = _user_id(token.get(api_settings.USER_ID_CLAIM))
    platform_key = token.get(PLATFORM_CLAIM)
    if user_id is None:
        raise exceptions.AuthenticationFailed("Invalid token: no user.")
    if not isinstance(platform_key, str) or not PLATFORM_KEY_RE.fullmatch(platform_key):
        raise exceptions.AuthenticationFailed("Invalid token: no platform.")
    user = _user_with_memberships(user_id)
    if user is None or not user.is_active:
        raise exceptions.AuthenticationFailed("User inactive or deleted.")
    member = any(m.platform.platform_key == platform_key for m in memberships_attached(user) or [])
    if not member and not user.is_superuser:
        raise exceptions.AuthenticationFailed("You are no longer a member of the token's platform.")
    token_platform_bind(user, platform_key)
    return user


def token_platform_bind(user: AbstractBaseUser, platform_key: str) -> None:
    """Keeps the platform the request's credential is scoped to (a JWT's, or a scoped API token's) on its user:
    tenancy acts there and nowhere else."""
    setattr(user, _TOKEN_PLATFORM_ATTR, platform_key)


def token_platform(user: AbstractBaseUser) -> str | None:
    """The platform_key of the JWT or scoped API token the request's user authenticated with, or None (an
    unscoped token, a session)."""
    return getattr(user, _TOKEN_PLATFORM_ATTR, None)


def token_pair_issue(*, user: AbstractBaseUser, platform: Platform) -> dict[str, str]:
    """A refresh token and an access token for ``user`` acting in ``platform`` (the caller has checked that they
    may: ``accounts.tenancy.tenant_resolve``). Writes nothing."""
    refresh = RefreshToken.for_user(user)
    refresh[PLATFORM_CLAIM] = platform.platform_key
    return {"refresh": str(refresh), "access": str(refresh.access_token)}


def access_token_issue(*, refresh: RefreshToken) -> dict[str, Any]:
    """A new access token from a validated refresh token whose holder is still allowed (``token_holder``); the
    refresh token is not rotated (no blacklist: an old one would stay valid beside the new one)."""
    return {"access": str(refresh.access_token)}


def _user_id(claim: object) -> int | None:
    """The ``user_id`` claim as an id (simplejwt writes it as a string of digits), or None."""
    if isinstance(claim, str) and _USER_ID_RE.fullmatch(claim):
        claim = int(claim)
    return claim if type(claim) is int and 0 < claim <= _MAX_ID else None


def _user_with_memberships(user_id: int) -> AbstractBaseUser | None:
    user_model = get_user_model()
    fields = list(user_model._meta.concrete_fields)
    sql = user_by_id_statement([f.column for f in fields], user_model._meta.db_table, user_model._meta.pk.column)
    with server_bound_cursor() as cursor:
        cursor.execute(sql, [user_id], prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    user = user_model.from_db("default", [f.attname for f in fields], row[:-1])
    memberships_attach(user, row[-1])
    return user
