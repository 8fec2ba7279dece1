"""The entitlements API: the platform's AI plans and seats (owners and admins), a member's own seat, seat
assignments, and the operators' catalogue of AI plans.

Which platform a request acts in is resolved as everywhere (``accounts.tenancy``): the caller's one platform, or
the one ``X-Platform-Key`` names. Operators (Django superusers) read any platform's view by naming it with
``X-Platform-Key``, and write the catalogue (``POST``/``PATCH /ai-plans/``), which is no platform's: those two
need no platform at all."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, IsPlatformMember, TenantGenericViewSet
from billing_service.db_router import lagging_reads
from billing_service.pagination import CountedPagination
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema, paginated
from billing_service.validation import validated
from entitlements import catalogue, selectors, services
from entitlements.api.serializers import (
    AIPlanCatalogueSerializer,
    AIPlanDetailSerializer,
    AIPlanInputSerializer,
    AIPlanListQuerySerializer,
    AIPlanSerializer,
    AIPlanUpdateInputSerializer,
    EntitlementsSerializer,
    MySeatSerializer,
    SeatAssignInputSerializer,
    SeatAssignmentSerializer,
)
from entitlements.errors import AIPlanNotFound, OperatorRequired
from entitlements.models import AIPlan, SeatAssignment
from entitlements.selectors import EntitledModel, SeatUsage

TAGS = ["entitlements"]
REF_MAX_LENGTH = 100  # of an id or slug echoed back in a 404

AI_PLAN_PARAM = OpenApiParameter(
    "ai_plan", OpenApiTypes.STR, OpenApiParameter.PATH, description="The AI plan's id or slug."
)
USERNAME_PARAM = OpenApiParameter("username", OpenApiTypes.STR, OpenApiParameter.PATH, description="The member.")
AI_PLAN_404 = error_response("No such AI plan offered to your platform (ai_plan_not_found).")
CATALOGUE_400 = error_response(
    "Invalid input, every bad field named in details: an unknown tier, overage, billing_cycle or currency; a budget "
    "not above 0, finer than 6 decimals, over 1000000000, not a decimal (a float, NaN, Infinity, a boolean), or a "
    "session_budget above weekly_budget; a price that is not a JSON integer of cents from 0 to 1000000000; a "
    "malformed or changed slug; a malformed Stripe price id; models that repeat a model, name one no rate card "
    "prices, give one a tier above the plan's or another tier than other active plans give it; an unknown or "
    "repeated platform key; an unknown field."
)
CATALOGUE_403 = error_response("Only operators (Django superusers) keep the catalogue (operator_required).")
CATALOGUE_409 = error_response("Another AI plan already has this slug or Stripe price id (ai_plan_conflict); "
                               "details name the field.")


class IsOperator(BasePermission):
    """Django superusers (else 403 ``operator_required``)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if view.action is not None and not request.user.is_superuser:
            raise OperatorRequired()
        return True


def _display_name(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def _assignment_row(assignment: SeatAssignment, usage: SeatUsage) -> dict[str, Any]:
    return {
        "username": assignment.user.get_username(),
        "display_name": _display_name(assignment.user),
        "assigned_at": assignment.assigned_at,
        "assigned_by": assignment.assigned_by.get_username() if assignment.assigned_by_id else None,
        "weekly_cost_used": usage.weekly.used,
        "session_cost_used": usage.session.used,
    }


class EntitlementsViewSet(TenantGenericViewSet):
    """Your platform's AI entitlements: the AI plans offered to it with their seats, the seats in all, what its
    seats spent this week and this month (its time zone), and when a provider last confirmed its seats. Owners
    and admins only."""

    serializer_class = EntitlementsSerializer
    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    @extend_schema(
        operation_id="billing_entitlements_retrieve",
        summary="The platform's AI plans, seats and seat spending (owners and admins)",
        responses={200: EntitlementsSerializer, **ERROR_RESPONSES},
        tags=TAGS,
    )
    @lagging_reads  # the platform's overview: may lag (README, "Read replicas")
    def retrieve(self, request: Request) -> Response:
        platform = self.tenant.platform
        plans = list(selectors.ai_plans_offered(platform=platform))
        seats = selectors.seats_by_plan(platform_id=platform.pk, ai_plan_ids=[plan.pk for plan in plans])
        for plan in plans:
            plan.seat_counts = seats[plan.pk]
        spending = selectors.seat_spending_of(platform=platform)
        body = {
            "plans": plans,
            "total_seats": sum(s.total for s in seats.values()),
            "assigned_seats": sum(s.assigned for s in seats.values()),
            "weekly_usage": spending.weekly,
            "monthly_usage": spending.monthly,
            "last_refresh": selectors.seats_last_synced(platform_id=platform.pk),
        }
        return Response(EntitlementsSerializer(body).data)


class MyEntitlementViewSet(TenantGenericViewSet):
    """Your seat on this platform: its AI plan, the models you may call, and your weekly and session budgets now;
    `{"seat": null}` without one. Any member."""

    serializer_class = MySeatSerializer
    permission_classes = [IsAuthenticated, IsPlatformMember]

    @extend_schema(
        operation_id="billing_entitlements_me_retrieve",
        summary="Your seat, its models and budgets, or null",
        responses={200: MySeatSerializer, **ERROR_RESPONSES},
        tags=TAGS,
    )
    def retrieve(self, request: Request) -> Response:
        platform = self.tenant.platform
        assignment = selectors.seat_of(platform=platform, user_id=request.user.pk)
        if assignment is None:
            return Response(MySeatSerializer({"seat": None}).data)
        plan = assignment.ai_plan
        usage = selectors.seat_usage_of(platform=platform, ai_plan=plan, user_ids=[request.user.pk])[request.user.pk]
        seat = {
            "ai_plan": plan,
            "tier": plan.tier,
            "assigned_at": assignment.assigned_at,
            "models": selectors.entitled_models(platform=platform, ai_plan=plan),
            "budgets": {"weekly": usage.weekly, "session": usage.session},
        }
        return Response(MySeatSerializer({"seat": seat}).data)


class AIPlanViewSet(TenantGenericViewSet):
    """The AI plans offered to your platform (owners and admins; members get 403), and their seats: assign a
    seat to a member (`POST …/seats/`) or free it (`DELETE …/seats/{username}/`). A plan is named by its id or
    its slug. Operators (Django superusers) keep the catalogue: `POST` a plan, `PATCH` one (any plan of the
    catalogue, active or not); plans are never deleted (`is_active: false` retires one). `stripe_price_id` is
    shown to operators only."""

    serializer_class = AIPlanSerializer
    pagination_class = CountedPagination
    lookup_url_kwarg = "ai_plan"

    def get_permissions(self) -> list[BasePermission]:
        if self.action in ("create", "partial_update"):
            return [IsAuthenticated(), IsOperator()]
        return [IsAuthenticated(), IsPlatformAdmin()]

    def get_queryset(self) -> QuerySet[AIPlan]:
        return selectors.ai_plans_offered(platform=self.tenant.platform)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "operator": bool(self.request.user.is_superuser)}

    def get_object(self) -> AIPlan:
        ref = self.kwargs[self.lookup_url_kwarg]
        plan = selectors.ai_plan_get(platform=self.tenant.platform, ref=ref)
        if plan is None:
            raise AIPlanNotFound(details={"ai_plan": ref[:REF_MAX_LENGTH]})
        return plan

    # --- the platform's view ---

    @extend_schema(
        operation_id="billing_ai_plans_list",
        summary="The AI plans offered to your platform (owners and admins)",
        parameters=[AIPlanListQuerySerializer],
        responses={200: paginated(AIPlanSerializer, "PaginatedAIPlanList"), **ERROR_RESPONSES},
        tags=TAGS,
    )
    def list(self, request: Request) -> Response:
        query = validated(AIPlanListQuerySerializer, request.query_params)
        plans = self.paginate_queryset(self.get_queryset())
        if query["include_seats"]:  # None (not given) or False: without seats
            seats = selectors.seats_by_plan(platform_id=self.tenant.platform.pk, ai_plan_ids=[p.pk for p in plans])
            for plan in plans:
                plan.seat_counts = seats[plan.pk]
        return self.get_paginated_response(self.get_serializer(plans, many=True).data)

    @extend_schema(
        operation_id="billing_ai_plans_retrieve",
        summary="An AI plan with its seats on your platform and its models (owners and admins)",
        parameters=[AI_PLAN_PARAM],
        responses={**ERROR_RESPONSES, 200: AIPlanDetailSerializer, 404: AI_PLAN_404},
        tags=TAGS,
    )
    def retrieve(self, request: Request, ai_plan: str) -> Response:
        plan = self.get_object()
        platform = self.tenant.platform
        assignments = list(selectors.seat_assignments_of(platform=platform, ai_plan=plan))
        usage = selectors.seat_usage_of(platform=platform, ai_plan=plan, user_ids=[a.user_id for a in assignments])
        seats = selectors.seats_of(platform_id=platform.pk, ai_plan_id=plan.pk)
        plan.seat_detail = {
            "total": seats.total, "assigned": seats.assigned, "unassigned": seats.unassigned,
            "over_assigned": seats.over_assigned,
            "assignments": [_assignment_row(a, usage[a.user_id]) for a in assignments],
        }
        plan.model_list = [EntitledModel(model=m.model, display_name=m.display_name or m.model, tier=m.tier)
                           for m in plan.models.all()]
        return Response(AIPlanDetailSerializer(plan, context=self.get_serializer_context()).data)

    # --- seats ---

    @extend_schema(
        operation_id="billing_ai_plans_seats_create",
        summary="Give a member a seat on the plan (owners and admins)",
        parameters=[AI_PLAN_PARAM],
        request=SeatAssignInputSerializer,
        responses={
            **ERROR_RESPONSES,
            201: OpenApiResponse(SeatAssignmentSerializer, description="The member's new seat."),
            404: error_response("No such AI plan offered to your platform (ai_plan_not_found), or no member of it "
                                "has that username (member_not_found)."),
            409: error_response("The member already holds a seat on the platform (seat_already_assigned), or every "
                                "seat of the plan is assigned (no_seat_available)."),
        },
        tags=TAGS,
    )
    @action(detail=True, methods=["post"], url_path="seats", url_name="seats")
    def seats(self, request: Request, ai_plan: str) -> Response:
        plan = self.get_object()
        data = validated(SeatAssignInputSerializer, request.data)
        platform = self.tenant.platform
        assignment = services.seat_assign(platform=platform, ai_plan=plan, username=data["username"],
                                          actor=request.user)
        usage = selectors.seat_usage_of(platform=platform, ai_plan=plan, user_ids=[assignment.user_id])
        row = _assignment_row(assignment, usage[assignment.user_id])
        return Response(SeatAssignmentSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="billing_ai_plans_seats_destroy",
        summary="Free a member's seat on the plan (owners and admins)",
        parameters=[AI_PLAN_PARAM, USERNAME_PARAM],
        request=None,
        responses={
            **ERROR_RESPONSES,
            204: OpenApiResponse(description="The seat is free."),
            404: error_response("No such AI plan offered to your platform (ai_plan_not_found), no member of it has "
                                "that username (member_not_found), or they hold no seat on this plan "
                                "(seat_not_assigned)."),
        },
        tags=TAGS,
    )
    @action(detail=True, methods=["delete"], url_path="seats/<str:username>", url_name="seat")
    def seat(self, request: Request, ai_plan: str, username: str) -> Response:
        plan = self.get_object()
        services.seat_unassign(platform=self.tenant.platform, ai_plan=plan, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)

    # --- the catalogue (operators) ---

    @extend_schema(
        operation_id="billing_ai_plans_create",
        summary="Add an AI plan to the catalogue (operators)",
        request=AIPlanInputSerializer,
        responses={
            **ERROR_RESPONSES,
            201: OpenApiResponse(AIPlanCatalogueSerializer, description="The new plan (`Location`: its URL)."),
            400: CATALOGUE_400,
            403: CATALOGUE_403,
            409: CATALOGUE_409,
        },
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        data = validated(AIPlanInputSerializer, request.data)
        plan = catalogue.ai_plan_create(**data, actor=request.user)
        return Response(
            AIPlanCatalogueSerializer(plan, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("billing-ai-plan", kwargs={"ai_plan": plan.pk})},
        )

    @extend_schema(
        operation_id="billing_ai_plans_partial_update",
        summary="Change an AI plan of the catalogue (operators)",
        parameters=[AI_PLAN_PARAM],
        request=AIPlanUpdateInputSerializer,
        responses={
            **ERROR_RESPONSES,
            200: AIPlanCatalogueSerializer,
            400: CATALOGUE_400,
            403: CATALOGUE_403,
            404: error_response("No such AI plan in the catalogue (ai_plan_not_found)."),
            409: CATALOGUE_409,
        },
        tags=TAGS,
    )
    def partial_update(self, request: Request, ai_plan: str) -> Response:
        plan = selectors.ai_plan_find(ref=ai_plan)
        if plan is None:
            raise AIPlanNotFound("No such AI plan in the catalogue.", details={"ai_plan": ai_plan[:REF_MAX_LENGTH]})
        data = validated(AIPlanUpdateInputSerializer, request.data)
        plan = catalogue.ai_plan_update(ai_plan_id=plan.pk, **data, actor=request.user)
        return Response(AIPlanCatalogueSerializer(plan, context=self.get_serializer_context()).data)
