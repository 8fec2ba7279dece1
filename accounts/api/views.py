"""The base every tenant-scoped API view stands on."""

from __future__ import annotations

from functools import cached_property

from rest_framework import viewsets

from accounts.tenancy import PLATFORM_HEADER, Tenant, tenant_resolve


class TenantViewSetMixin:
    # Resolves the caller's platform and role once per request (``self.tenant``). (A comment, not a
    # docstring: the schema generator would show a docstring as every operation's description.)

    @cached_property
    def tenant(self) -> Tenant:
        request = self.request  # type: ignore[attr-defined]
        return tenant_resolve(user=request.user, platform_key=request.headers.get(PLATFORM_HEADER))


class TenantViewSet(TenantViewSetMixin, viewsets.ViewSet):
    pass


class TenantGenericViewSet(TenantViewSetMixin, viewsets.GenericViewSet):
    pass
