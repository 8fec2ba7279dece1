from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from accounts.models import Membership, Platform


def platform_get(*, platform_key: str) -> Platform | None:
    return Platform.objects.filter(platform_key=platform_key).first()


def membership_list_for_user(*, user: AbstractBaseUser) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("platform"))


def membership_get(*, user: AbstractBaseUser, platform: Platform) -> Membership | None:
    return Membership.objects.filter(user=user, platform=platform).first()
