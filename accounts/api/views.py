"""The base every tenant-scoped API view stands on: the caller's platform and role (``tenant``), the
permissions that read them, the FilterSet backend, and the schema that documents what a viewset declares."""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Any

from rest_framework import viewsets
from rest_framework.filters import BaseFilterBackend
from rest_framework.metadata import SimpleMetadata
from rest_framework.permissions import BasePermission

from accounts.errors import NotAMember
from accounts.tenancy import PLATFORM_HEADER, Tenant, tenant_resolve
from billing_service.schema import BillingAutoSchema, filterset_parameters, query_parameter_names
from billing_service.validation import query_problems, validated_filters


class IsPlatformAdmin(BasePermission):
    """Owners and admins of the caller's platform, and operators (else 403 ``admin_required``)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if view.action is not None:  # None: a method the endpoint does not take (405)
            view.tenant.require_admin()
        return True


class IsPlatformMember(BasePermission):
    """Members of the caller's platform (else 403 ``not_a_member``, worded by the view's
    ``not_a_member_message``)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if view.action is not None and view.tenant.membership is None:
            raise NotAMember(getattr(view, "not_a_member_message", None))
        return True


class FilterSetBackend(BaseFilterBackend):
    """The view's ``filterset_class`` bound to the query: a bad value is a 400 naming the field."""

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset_class = getattr(view, "filterset_class", None)
        if filterset_class is None:
            return queryset
        return validated_filters(filterset_class, request, queryset).qs


def declared_query_parameters(view: Any) -> list:
    """What a list action of ``view`` takes besides its ``extend_schema`` parameters: its FilterSet's filters
    and its pagination's query."""
    if getattr(view, "action", None) != "list":
        return []
    filterset_class = getattr(view, "filterset_class", None)
    pagination_class = getattr(view, "pagination_class", None)
    return [
        *(filterset_parameters(filterset_class) if filterset_class else []),
        *([pagination_class.query_serializer] if pagination_class else []),
    ]


class TenantAutoSchema(BillingAutoSchema):
    """Documents the query a list declares (``declared_query_parameters``); ``extend_schema`` parameters of
    the same name win (a listing may word its ``page_size`` its own way)."""

    def get_override_parameters(self):  # noqa: ANN201
        return [*declared_query_parameters(self.view), *super().get_override_parameters()]

    def _get_filter_parameters(self):  # noqa: ANN202
        return []  # the FilterSet's, from get_override_parameters (without calling get_queryset)


class TenantViewSetMixin:
    # Resolves the caller's platform and role once per request (``self.tenant``), and refuses a query
    # parameter the action does not document (what ``billing_service.schema.extend_schema`` records, and what
    # the viewset declares: ``declared_query_parameters``): a mistyped filter must not answer unfiltered data.
    # (Comments, not a docstring: the schema generator would show a docstring as every operation's
    # description.)

    schema = TenantAutoSchema()

    def initial(self, request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        # Before the rest (content negotiation reads ?format=, which these operations do not take either).
        action = getattr(self, "action", None)  # None: a method the endpoint does not take (405 below)
        if action:
            query_problems(request, self.query_parameter_names(action))
        super().initial(request, *args, **kwargs)  # type: ignore[misc]

    @classmethod
    def query_parameter_names(cls, action: str) -> frozenset[str]:
        return _query_parameter_names(cls, action)

    @cached_property
    def tenant(self) -> Tenant:
        request = self.request  # type: ignore[attr-defined]
        return tenant_resolve(user=request.user, platform_key=request.headers.get(PLATFORM_HEADER))


@lru_cache(maxsize=None)
def _query_parameter_names(cls: type, action: str) -> frozenset[str]:
    documented = getattr(getattr(cls, action, None), "query_parameters", frozenset())
    if action != "list":
        return documented
    return documented | query_parameter_names(declared_query_parameters(_ClassView(cls, action)))


class _ClassView:
    """A viewset class seen as a view of ``action`` (what ``declared_query_parameters`` reads)."""

    def __init__(self, cls: type, action: str) -> None:
        self.action = action
        self.filterset_class = getattr(cls, "filterset_class", None)
        self.pagination_class = getattr(cls, "pagination_class", None)


class TenantViewSet(TenantViewSetMixin, viewsets.ViewSet):
    pass


class DescriptionMetadata(SimpleMetadata):
    """OPTIONS: the view's name and description, without the serializer's fields (``determine_actions`` would
    look up an object of the URL, and the API's schema documents the fields)."""

    def determine_actions(self, request: Any, view: Any) -> dict:
        return {}


class TenantGenericViewSet(TenantViewSetMixin, viewsets.GenericViewSet):
    # Declared per viewset: queryset (get_queryset, from a selector), serializer_class, filterset_class,
    # pagination_class, permission_classes.
    filter_backends = [FilterSetBackend]
    pagination_class = None
    metadata_class = DescriptionMetadata
