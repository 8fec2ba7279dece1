"""Writes for platforms and memberships. Each creates the credit accounts that go with it."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework.authtoken.models import Token

from accounts.models import Membership, Platform, Role
from credits.services import account_ensure


@transaction.atomic
def platform_create(*, platform_key: str, name: str | None = None) -> tuple[Platform, bool]:
    """Creates the platform and its own credit account; idempotent (an existing platform is kept,
    its name updated when one is given)."""
    platform, created = Platform.objects.get_or_create(
        platform_key=platform_key, defaults={"name": name or platform_key}
    )
    if not created and name and platform.name != name:
        platform.name = name
        platform.save(update_fields=["name"])
    account_ensure(platform=platform, user=None)
    return platform, created


@transaction.atomic
def member_add(
    *, platform: Platform, username: str, role: str = Role.MEMBER, email: str | None = None
) -> tuple[Membership, Token]:
    """Creates the user if needed, sets the role, ensures a credit account and an API token."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(Role.values)}")
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": email or ""})
    if email and user.email != email:
        user.email = email
        user.save(update_fields=["email"])
    membership, created = Membership.objects.get_or_create(platform=platform, user=user, defaults={"role": role})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    account_ensure(platform=platform, user=user)
    token, _ = Token.objects.get_or_create(user=user)
    return membership, token


def membership_saved(*, membership: Membership) -> None:
    """Called after a membership is saved elsewhere (Django admin): give it its credit account."""
    account_ensure(platform=membership.platform, user=membership.user)


def token_for(*, user: AbstractBaseUser) -> Token:
    token, _ = Token.objects.get_or_create(user=user)
    return token
