"""Token authentication as DRF's (``Authorization: Token <key>``), looked up with one prepared statement:
every API request authenticates, and the ORM would compile the same query each time. The same statement
brings the user's memberships (``accounts.selectors.membership_list_for_user`` uses them), so resolving the
request's platform costs no second query."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from accounts.selectors import memberships_attach
from accounts.sql import user_by_token_statement
from billing_service.db import server_bound_cursor

# What rest_framework.authtoken makes: 40 lowercase hexadecimal digits. Anything else names no token and is
# refused without a query (a NUL byte would not even reach PostgreSQL).
TOKEN_KEY_RE = re.compile(r"[0-9a-f]{40}")


class PreparedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str):
        if not TOKEN_KEY_RE.fullmatch(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        user_model = get_user_model()
        fields = [f for f in user_model._meta.concrete_fields]
        pk = user_model._meta.pk.column
        sql = user_by_token_statement([f.column for f in fields], user_model._meta.db_table, pk)
        with server_bound_cursor() as cursor:
            cursor.execute(sql, [key], prepare=True)
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user = user_model.from_db("default", [f.attname for f in fields], row[:-1])
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        memberships_attach(user, row[-1])
        return user, key
