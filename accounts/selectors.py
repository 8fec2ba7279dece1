from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from accounts.models import Membership, Platform
from billing_service.db import server_bound_cursor

# Every request resolves its tenant: one prepared statement, not an ORM query compiled per request.
_MEMBERSHIP_FIELDS = ["id", "platform_id", "user_id", "role", "created_at"]
_PLATFORM_FIELDS = ["id", "platform_key", "name", "created_at"]
_MEMBERSHIPS_OF_USER = (
    "SELECT m.id, m.platform_id, m.user_id, m.role, m.created_at, p.id, p.platform_key, p.name, p.created_at "
    "FROM accounts_membership m JOIN accounts_platform p ON p.id = m.platform_id "
    "WHERE m.user_id = %s ORDER BY m.platform_id"
)


def platform_get(*, platform_key: str) -> Platform | None:
    return Platform.objects.filter(platform_key=platform_key).first()


def membership_list_for_user(*, user: AbstractBaseUser) -> list[Membership]:
    """The user's memberships, each with its platform."""
    with server_bound_cursor() as cursor:
        cursor.execute(_MEMBERSHIPS_OF_USER, [user.pk], prepare=True)
        rows = cursor.fetchall()
    memberships = []
    for row in rows:
        membership = Membership.from_db("default", _MEMBERSHIP_FIELDS, row[:5])
        membership.platform = Platform.from_db("default", _PLATFORM_FIELDS, row[5:])
        memberships.append(membership)
    return memberships


def membership_get(*, user: AbstractBaseUser, platform: Platform) -> Membership | None:
    return Membership.objects.filter(user=user, platform=platform).first()
