from __future__ import annotations

from datetime import datetime

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


def memberships_of_user_json(user_id_sql: str) -> str:
    """A SQL expression: the memberships of the user whose id is ``user_id_sql``, as a JSON array of
    ``_MEMBERSHIPS_OF_USER``'s rows (for ``memberships_attach``)."""
    return (
        "(SELECT coalesce(json_agg(json_build_array(m.id, m.platform_id, m.user_id, m.role, m.created_at, p.id, "
        "p.platform_key, p.name, p.created_at) ORDER BY m.platform_id), '[]') "
        f"FROM accounts_membership m JOIN accounts_platform p ON p.id = m.platform_id WHERE m.user_id = {user_id_sql})"
    )


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
    """The user's memberships, each with its platform (read with the user by token authentication)."""
    attached = memberships_attached(user)
    if attached is not None:
        return attached
    with server_bound_cursor() as cursor:
        cursor.execute(_MEMBERSHIPS_OF_USER, [user.pk], prepare=True)
        rows = cursor.fetchall()
    return [_membership(row) for row in rows]


def membership_get(*, user: AbstractBaseUser, platform: Platform) -> Membership | None:
    return Membership.objects.filter(user=user, platform=platform).first()
