"""Which platform a request acts in, and with which role.

A user in one platform acts in it. A user in several picks one with the ``X-Platform-Key`` header; without
it the request is ambiguous (400). Operators (Django superusers) may act in any platform they name.

A request authenticated with a JWT acts in the token's platform (``accounts.jwt.token_platform``), with or without
the header, even for a user in several platforms; a header naming another platform is a 403 ``not_a_member``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from accounts.errors import AdminRequired, NotAMember, PlatformNotFound, PlatformRequired
from accounts.jwt import token_platform
from accounts.models import PLATFORM_KEY_RE, Membership, Platform
from accounts.selectors import membership_list_for_user, platform_get

PLATFORM_HEADER = "X-Platform-Key"


@dataclass(frozen=True, slots=True)
class Tenant:
    platform: Platform
    user: AbstractBaseUser
    membership: Membership | None  # None only for an operator acting outside their memberships

    @property
    def is_operator(self) -> bool:
        return bool(self.user.is_superuser)

    @property
    def is_admin(self) -> bool:
        return self.is_operator or (self.membership is not None and self.membership.is_admin)

    def require_admin(self) -> None:
        if not self.is_admin:
            raise AdminRequired()


def tenant_resolve(*, user: AbstractBaseUser, platform_key: str | None) -> Tenant:
    scoped = token_platform(user)
    if scoped is not None:
        if platform_key and platform_key != scoped:
            raise NotAMember(
                "Your token is scoped to another platform: obtain a token for this one (POST /api/auth/jwt/).",
                details={"token_platform": scoped},
            )
        platform_key = scoped
    if platform_key and not PLATFORM_KEY_RE.fullmatch(platform_key):
        # Not a key any platform can have: answered as an unknown one, without a query.
        raise PlatformNotFound() if user.is_superuser else NotAMember()
    if platform_key:
        for membership in membership_list_for_user(user=user):  # every membership of the user
            if membership.platform.platform_key == platform_key:
                return Tenant(platform=membership.platform, user=user, membership=membership)
        if not user.is_superuser:
            raise NotAMember()
        platform = platform_get(platform_key=platform_key)
        if platform is None:  # operators learn that the key is wrong
            raise PlatformNotFound()
        return Tenant(platform=platform, user=user, membership=None)

    memberships = membership_list_for_user(user=user)
    if len(memberships) == 1:
        return Tenant(platform=memberships[0].platform, user=user, membership=memberships[0])
    if not memberships and not user.is_superuser:
        raise NotAMember("You are not a member of any platform.")
    raise PlatformRequired()


def platform_admin_resolve(*, tenant: Tenant, platform_key: str) -> Platform:
    """For ``?platform_key=``: the named platform, if the caller administers it (403 otherwise)."""
    if platform_key == tenant.platform.platform_key:
        tenant.require_admin()
        return tenant.platform
    other = tenant_resolve(user=tenant.user, platform_key=platform_key)
    if not other.is_admin:
        raise AdminRequired()
    return other.platform
