"""The plan catalogue (members), plan management (owners and admins) and the caller's subscription."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, TenantGenericViewSet
from billing_service.pagination import CountedPagination
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema, paginated
from billing_service.validation import validated
from credits.api.views import PLATFORM_KEY_PARAM, CallerAccountMixin
from subscriptions import selectors, services
from subscriptions.api.serializers import (
    AdminPlanListQuerySerializer,
    AdminPlanSerializer,
    CatalogPlanSerializer,
    CurrentSubscriptionSerializer,
    PlanInputSerializer,
    PlanListQuerySerializer,
    PlanUpdateInputSerializer,
)
from subscriptions.errors import PlanNotFound
from subscriptions.models import Plan

PLAN_ID_PARAM = OpenApiParameter(
    "plan_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The plan's id."
)
PLAN_400 = error_response(
    "Invalid input, every bad field named in details: a price that is not a JSON integer of cents from 0 "
    "(a string, a fraction, a boolean, negative or too large); a malformed or reserved slug, or a changed "
    "one; credits not a decimal; an unknown rollover_policy or currency; features not a list of distinct "
    "non-blank strings; rollover_cap missing while capped or given while not; a malformed provider id; a "
    "price changed while its Stripe price id stays; an unknown field."
)
PLAN_409 = error_response(
    "Another plan of the platform already has this slug, Stripe price id or Creem product id "
    "(plan_conflict); details name the field."
)


class PlanViewSet(ListModelMixin, TenantGenericViewSet):
    """The plans your platform sells: active and purchasable ones, in the platform's order (`sort_order`, then
    price). Prices are integer cents per month and per year; `credits_included` is credited each billing
    period. `is_current` marks the plan of your current subscription."""

    serializer_class = CatalogPlanSerializer
    pagination_class = CountedPagination

    def get_queryset(self) -> QuerySet[Plan]:
        return selectors.plan_catalog(platform_id=self.tenant.platform.pk)

    def get_serializer_context(self) -> dict:
        tenant = self.tenant
        current_plan_id = (
            selectors.subscription_current_plan_id(platform=tenant.platform, user=self.request.user)
            if tenant.membership is not None
            else None
        )
        return {**super().get_serializer_context(), "current_plan_id": current_plan_id}

    @extend_schema(
        operation_id="billing_plans_list",
        summary="The plans on sale, with the one you are on",
        parameters=[PlanListQuerySerializer],
        responses={200: paginated(CatalogPlanSerializer, "PaginatedPlanList"), **ERROR_RESPONSES},
        tags=["plans"],
    )
    def list(self, request: Request) -> Response:
        return super().list(request)


class AdminPlanViewSet(ListModelMixin, TenantGenericViewSet):
    """Your platform's plans, for owners and admins (members get 403; another platform's plan is 404).

    Plans are never deleted: set `is_active` false to withdraw one (subscribers keep it). The `slug` is
    fixed once created. A price of a cycle sold through a Stripe price can only change with a new Stripe
    price id for that cycle in the same request (Stripe prices are immutable), or with the id cleared. PUT
    needs `name`, both prices and `credits_included` and leaves other omitted fields as they are; PATCH
    changes only the fields sent. Unknown fields are refused; `id`, `created_at` and `updated_at` may be sent
    back and are ignored."""

    serializer_class = AdminPlanSerializer
    pagination_class = CountedPagination
    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    lookup_url_kwarg = "plan_id"

    def get_queryset(self) -> QuerySet[Plan]:
        query = validated(AdminPlanListQuerySerializer, self.request.query_params)
        return selectors.plan_list(
            platform=self.tenant.platform, is_active=query["is_active"], purchasable=query["purchasable"]
        )

    def get_object(self) -> Plan:
        plan_uuid = services.as_uuid(self.kwargs[self.lookup_url_kwarg])
        plan = selectors.plan_get(platform=self.tenant.platform, plan_id=plan_uuid) if plan_uuid else None
        if plan is None:
            raise PlanNotFound()
        return plan

    @extend_schema(
        operation_id="billing_admin_plans_list",
        summary="Every plan of the platform (owners and admins)",
        parameters=[AdminPlanListQuerySerializer],
        responses={200: paginated(AdminPlanSerializer, "PaginatedAdminPlanList"), **ERROR_RESPONSES},
        tags=["admin"],
    )
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        operation_id="billing_admin_plans_create",
        summary="Create a plan (owners and admins)",
        request=PlanInputSerializer,
        responses={
            **ERROR_RESPONSES,
            201: OpenApiResponse(AdminPlanSerializer, description="The new plan (`Location`: its URL)."),
            400: PLAN_400,
            409: PLAN_409,
        },
        tags=["admin"],
    )
    def create(self, request: Request) -> Response:
        data = validated(PlanInputSerializer, request.data)
        plan = services.plan_create(platform=self.tenant.platform, actor=request.user, **data)
        return Response(
            AdminPlanSerializer(plan).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("billing-admin-plan", kwargs={"plan_id": plan.pk})},
        )

    @extend_schema(
        operation_id="billing_admin_plans_retrieve",
        summary="One plan (owners and admins)",
        parameters=[PLAN_ID_PARAM],
        responses={
            **ERROR_RESPONSES,
            200: AdminPlanSerializer,
            404: error_response("No such plan (plan_not_found)."),
        },
        tags=["admin"],
    )
    def retrieve(self, request: Request, plan_id: str) -> Response:
        return Response(AdminPlanSerializer(self.get_object()).data)

    def _update(self, request: Request, *, partial: bool) -> Response:
        plan = self.get_object()
        serializer = PlanUpdateInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        updated = services.plan_update(plan_id=plan.pk, actor=request.user, **serializer.validated_data)
        return Response(AdminPlanSerializer(updated).data)

    @extend_schema(
        operation_id="billing_admin_plans_update",
        summary="Replace a plan's settings (owners and admins)",
        parameters=[PLAN_ID_PARAM],
        request=PlanUpdateInputSerializer,
        responses={
            **ERROR_RESPONSES,
            200: AdminPlanSerializer,
            400: PLAN_400,
            404: error_response("No such plan (plan_not_found)."),
            409: PLAN_409,
        },
        tags=["admin"],
    )
    def update(self, request: Request, plan_id: str) -> Response:
        return self._update(request, partial=False)

    @extend_schema(
        operation_id="billing_admin_plans_partial_update",
        summary="Change some of a plan's settings (owners and admins)",
        parameters=[PLAN_ID_PARAM],
        request=PlanUpdateInputSerializer,
        responses={
            **ERROR_RESPONSES,
            200: AdminPlanSerializer,
            400: PLAN_400,
            404: error_response("No such plan (plan_not_found)."),
            409: PLAN_409,
        },
        tags=["admin"],
    )
    def partial_update(self, request: Request, plan_id: str) -> Response:
        return self._update(request, partial=True)


class SubscriptionViewSet(CallerAccountMixin, TenantGenericViewSet):
    """Your current subscription (trialing, active or past due), or `{"subscription": null}` when you are on
    the free trial. Owners and admins see the platform's own with `?platform_key=`. Subscriptions are started,
    changed and ended by checkout and the payment providers' webhooks, not here."""

    serializer_class = CurrentSubscriptionSerializer

    @extend_schema(
        operation_id="billing_subscription_retrieve",
        summary="Your current subscription, or null",
        parameters=[PLATFORM_KEY_PARAM],
        responses={200: CurrentSubscriptionSerializer, **ERROR_RESPONSES},
        tags=["account"],
    )
    def retrieve(self, request: Request) -> Response:
        account = self.caller_account(request)
        subscription = selectors.subscription_current(account_id=account.pk)
        return Response(CurrentSubscriptionSerializer({"subscription": subscription}).data)
