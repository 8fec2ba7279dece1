from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser

from accounts.models import Membership, Platform
from accounts.sql import MEMBERSHIPS_OF_USER
from billing_service.db import server_bound_cursor

# Every request resolves its tenant: one prepared statement, not an ORM query compiled per request.
_MEMBERSHIP_FIELDS = ["id", "platform_id", "user_id", "role", "created_at"]
_PLATFORM_FIELDS = ["id", "platform_key", "name", "created_at"]


def platform_get(*, platform_key: str) -> Platform | None:
    return Platform.objects.filter(platform_key=platform_key).first()


def memberships_attach(user: AbstractBaseUser, rows: list[list]) -> None:
    """Keeps the memberships read with the user (``memberships_of_user_json``) for this request."""
    memberships = []
    for row in rows:
        row[4], row[8] = datetime.fromisoformat(row[4]), datetime.fromisoformat(row[8])
        memberships.append(_membership(row))
    user._billing_memberships = memberships


def memberships_attached(user: AbstractBaseUser) -> list[Membership] | None:
    """The memberships read with the user, or None (a session user: ``membership_list_for_user`` reads them)."""
    return getattr(user, "_billing_memberships", None)


def _membership(row: list | tuple) -> Membership:
    membership = Membership.from_db("default", _MEMBERSHIP_FIELDS, row[:5])
    membership.platform = Platform.from_db("default", _PLATFORM_FIELDS, row[5:])
    return membership


def membership_list_for_user(*, user: AbstractBaseUser) -> list[Membership]:
    """The user's memberships, each with its platform: read with the user by token authentication, else read here
    (one prepared statement) and kept on the user for the rest of the request (a session user's page calls several
    views)."""
    attached = memberships_attached(user)
    if attached is not None:
        return attached
    with server_bound_cursor() as cursor:
        cursor.execute(MEMBERSHIPS_OF_USER, [user.pk], prepare=True)
        rows = cursor.fetchall()
    memberships = [_membership(row) for row in rows]
    user._billing_memberships = memberships
    return memberships

