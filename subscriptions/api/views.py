"""The plan catalogue (members), plan management (owners and admins) and the caller's subscription."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import TenantViewSet
from billing_service.pagination import page_response
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


def _page(request: Request, rows: Any, query: dict, serializer: Any, context: dict | None = None) -> dict:
    size, page = query["page_size"], query["page"]
    offset = (page - 1) * size
    found = list(rows[offset : offset + size])
    count = rows.count() if len(found) == size or page > 1 else len(found)
    results = serializer(found, many=True, context=context or {}).data
    return page_response(request, count=count, page=page, page_size=size, results=results)


class PlanViewSet(TenantViewSet):
    """The plans your platform sells: active and purchasable ones, in the platform's order (`sort_order`, then
    price). Prices are integer cents per month and per year; `credits_included` is credited each billing
    period. `is_current` marks the plan of your current subscription."""

    @extend_schema(
        operation_id="billing_plans_list",
        summary="The plans on sale, with the one you are on",
        parameters=[PlanListQuerySerializer],
        responses={200: paginated(CatalogPlanSerializer, "PaginatedPlanList"), **ERROR_RESPONSES},
        tags=["plans"],
    )
    def list(self, request: Request) -> Response:
        query = validated(PlanListQuerySerializer, request.query_params)
        tenant = self.tenant
        current_plan_id = (
            selectors.subscription_current_plan_id(platform=tenant.platform, user=request.user)
            if tenant.membership is not None
            else None
        )
        rows = selectors.plan_catalog(platform_id=tenant.platform.pk)
        return Response(
            _page(request, rows, query, CatalogPlanSerializer, context={"current_plan_id": current_plan_id})
        )


class AdminPlanViewSet(TenantViewSet):
    """Your platform's plans, for owners and admins (members get 403; another platform's plan is 404).

    Plans are never deleted: set `is_active` false to withdraw one (subscribers keep it). The `slug` is
    fixed once created. A price of a cycle sold through a Stripe price can only change with a new Stripe
    price id for that cycle in the same request (Stripe prices are immutable), or with the id cleared. PUT
    needs `name`, both prices and `credits_included` and leaves other omitted fields as they are; PATCH
    changes only the fields sent. Unknown fields are refused; `id`, `created_at` and `updated_at` may be sent
    back and are ignored."""

    def _plan(self, plan_id: str) -> Plan:
        plan_uuid = services.as_uuid(plan_id)
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
        self.tenant.require_admin()
        query = validated(AdminPlanListQuerySerializer, request.query_params)
        rows = selectors.plan_list(
            platform=self.tenant.platform, is_active=query["is_active"], purchasable=query["purchasable"]
        )
        return Response(_page(request, rows, query, AdminPlanSerializer))

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
        self.tenant.require_admin()
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
        self.tenant.require_admin()
        return Response(AdminPlanSerializer(self._plan(plan_id)).data)

    def _update(self, request: Request, plan_id: str, *, partial: bool) -> Response:
        self.tenant.require_admin()
        plan = self._plan(plan_id)
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
        return self._update(request, plan_id, partial=False)

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
        return self._update(request, plan_id, partial=True)


class SubscriptionViewSet(CallerAccountMixin, TenantViewSet):
    """Your current subscription (trialing, active or past due), or `{"subscription": null}` when you are on
    the free trial. Owners and admins see the platform's own with `?platform_key=`. Subscriptions are started,
    changed and ended by checkout and the payment providers' webhooks, not here."""

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
