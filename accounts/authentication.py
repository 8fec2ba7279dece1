"""Token authentication as DRF's (``Authorization: Token <key>``), of hashed keys (``accounts.models.ApiToken``),
looked up with one prepared statement: every API request authenticates, and the ORM would compile the same query
each time. The same statement brings the user's memberships (``accounts.selectors.membership_list_for_user`` uses them), so resolving the
request's platform costs no second query.

``PlatformJWTAuthentication`` takes ``Authorization: Bearer <JWT>`` (``accounts.jwt``): one statement too, which
also checks that the token's holder is still active and a member of its platform."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.tokens import AccessToken

from accounts.jwt import token_holder, token_parse, token_platform_bind
from accounts.models import secret_digest
from accounts.selectors import memberships_attach, memberships_attached
from accounts.sql import user_by_token_statement
from billing_service.db import server_bound_cursor

# What ``accounts.services.api_token_issue`` makes (and rest_framework.authtoken made, before keys were hashed): 40
# lowercase hexadecimal digits. Anything else names no token and is refused without a query.
TOKEN_KEY_RE = re.compile(r"[0-9a-f]{40}")


class PreparedTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``: the key's digest names an ``ApiToken`` (only digests are stored), which must
    be neither revoked nor expired, of an active user. A token scoped to a platform acts there only, as a JWT does
    (its user must still be a member, or an operator)."""

    def authenticate_credentials(self, key: str):
        if not TOKEN_KEY_RE.fullmatch(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        user_model = get_user_model()
        fields = [f for f in user_model._meta.concrete_fields]
        pk = user_model._meta.pk.column
        sql = user_by_token_statement([f.column for f in fields], user_model._meta.db_table, pk)
        with server_bound_cursor() as cursor:
            cursor.execute(sql, [secret_digest(key)], prepare=True)
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        expires_at, revoked_at, platform_key = row[-3:]
        now = timezone.now()
        if revoked_at is not None:
            raise exceptions.AuthenticationFailed("Token revoked.")
        if expires_at is not None and expires_at <= now:
            raise exceptions.AuthenticationFailed("Token expired.")
        user = user_model.from_db("default", [f.attname for f in fields], row[:len(fields)])
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        memberships_attach(user, row[len(fields)])
        if platform_key is not None:
            member = any(m.platform.platform_key == platform_key for m in memberships_attached(user) or [])
            if not member and not user.is_superuser:
                raise exceptions.AuthenticationFailed("You are no longer a member of the token's platform.")
            token_platform_bind(user, platform_key)
        return user, key


class PlatformJWTAuthentication(JWTAuthentication):
    """``Authorization: Bearer <access token>``: a JWT scoped to one platform (``accounts.jwt``). Another scheme
    is left to the other authentication classes; a Bearer value that is not a valid access token of a user still
    active and still a member of its platform is a 401 (a DRF Token key sent as Bearer included)."""

    def authenticate(self, request):  # noqa: ANN001, ANN201
        header = self.get_header(request)
        parts = header.split() if header else []
        if not parts or parts[0] != b"Bearer":
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: send 'Bearer <token>'.")
        token = token_parse(parts[1], AccessToken)
        return token_holder(token), token


class PlatformJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of ``PlatformJWTAuthentication``: HTTP Bearer, format JWT (``jwtAuth``)."""

    target_class = "accounts.authentication.PlatformJWTAuthentication"
