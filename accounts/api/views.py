"""The base every tenant-scoped API view stands on."""

from __future__ import annotations

from functools import cached_property

from rest_framework import viewsets

from accounts.tenancy import PLATFORM_HEADER, Tenant, tenant_resolve
from billing_service.errors import InvalidInput


class TenantViewSetMixin:
    # Resolves the caller's platform and role once per request (``self.tenant``), and refuses a query parameter
    # the action does not document (``billing_service.schema.extend_schema`` records them): a mistyped filter
    # must not answer unfiltered data. (Comments, not a docstring: the schema generator would show a docstring
    # as every operation's description.)

    def initial(self, request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        # Before the rest (content negotiation reads ?format=, which these operations do not take either).
        action = getattr(self, "action", None)  # None: a method the endpoint does not take (405 below)
        allowed = getattr(getattr(self, action, None), "query_parameters", frozenset()) if action else None
        unknown = sorted(set(request.query_params) - allowed) if allowed is not None else []
        problems = {name: ["Unknown query parameter for this operation."] for name in unknown}
        # Only one value is read: a second one would be ignored.
        problems |= {name: ["Given more than once."] for name, values in request.query_params.lists()
                     if len(values) > 1 and name not in problems}
        if problems:
            raise InvalidInput(f"Invalid input: {', '.join(problems)}.", details=problems)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]

    @cached_property
    def tenant(self) -> Tenant:
        request = self.request  # type: ignore[attr-defined]
        return tenant_resolve(user=request.user, platform_key=request.headers.get(PLATFORM_HEADER))


class TenantViewSet(TenantViewSetMixin, viewsets.ViewSet):
    pass


class TenantGenericViewSet(TenantViewSetMixin, viewsets.GenericViewSet):
    pass
