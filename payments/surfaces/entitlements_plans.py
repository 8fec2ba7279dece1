"""entitlements-plans-api.txt (Entitlements & Plans), served under ``/api/`` by the native views.

- ``GET ai-entitlements``: ``GET /api/billing/entitlements/``, the platform's AI plans, seats and seat
  spending;
- ``POST ai-entitlements/_refresh``: ``POST /api/billing/entitlements/refresh/``, the seats read from Stripe
  now;
- ``GET ai-plans``: ``GET /api/billing/ai-plans/`` as a HAL page: ``_links``, ``_embedded["inf:ai-plan"]``,
  ``start``, ``count`` (the plans on this page) and ``total`` (all of them). ``includeSeats`` (``true`` or
  ``false``) adds each plan's seats. ``start`` (any offset, default 0) and ``limit`` (1-100, default 100) page
  it, as the native ``offset`` and ``limit``; ``_links.next`` and ``_links.prev`` name the pages beside it;
- ``GET ai-plans/{id}``: ``GET /api/billing/ai-plans/{id}/`` (by id, or by slug as natively), with the seats'
  assignments and the plan's models;
- ``GET ai-subscriptions``: ``GET /api/billing/ai-subscriptions/``, filtered by ``planSlug``, ``billingCycle``
  (``monthly``, ``annual``) and ``status`` (the native statuses: ``active``, ``past_due``, ``canceled``,
  ``expired``). The document answers every subscription; this surface answers up to ``limit`` (default and
  max 100) from ``start`` (default 0), and says ``start``, ``count`` and ``total`` beside ``subscriptions``.

Owners and admins of the platform only, and operators naming it with ``X-Platform-Key``, as the native views
allow: a member gets their 403 ``admin_required``. Names are camelCase; ids are the native UUIDs; a billing
cycle ``annual`` is our ``yearly``; amounts (budgets, usage, prices) are JSON numbers written exactly from the
native decimal strings. Errors keep the native envelope ``{"error": {"code", "message", "details"}}`` and
status, with the fields named as this API names them (``includeSeats``, ``start``, ``billingCycle``, ``id``).
A query parameter an endpoint does not take, or one given twice, is a 400 naming it, as natively."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from billing_service.errors import InvalidInput
from billing_service.schema import BODY_RESPONSES, ERROR_RESPONSES, SERVICE_RESPONSES, error_response, extend_schema
from billing_service.surfaces import ExactNumberField, SurfaceView, native_view, number
from entitlements.api.views import AIPlanViewSet, EntitlementsViewSet
from payments.api.seat_views import EntitlementsRefreshViewSet, SeatSubscriptionViewSet
from subscriptions.models import BillingCycle

TAG = "entitlements-plans-api"
PAGE_LIMIT = 100  # the native listings' largest page: the default here, where the document answers everything

# A billing cycle as this API names it, and ours.
BILLING_CYCLES = {"monthly": BillingCycle.MONTHLY, "annual": BillingCycle.YEARLY}
CYCLE_NAMES = {ours: theirs for theirs, ours in BILLING_CYCLES.items()}


# The native views, as their routers mount them.
NATIVE = {
    "entitlements": native_view(EntitlementsViewSet, "billing-entitlements", True, get="retrieve"),
    "refresh": native_view(EntitlementsRefreshViewSet, "billing-entitlements-refresh", True, post="create"),
    "plans": native_view(AIPlanViewSet, "billing-ai-plans", get="list"),
    "plan": native_view(AIPlanViewSet, "billing-ai-plans", True, get="retrieve"),
    "subscriptions": native_view(SeatSubscriptionViewSet, "billing-ai-subscriptions", get="list"),
}


# --- shapes: one function per object -------------------------------------------------------------------------


def billing_cycle(native: str) -> str:
    return CYCLE_NAMES.get(native, native)


def seat_counts(seats: dict[str, Any]) -> dict[str, Any]:
    return {"total": seats["total"], "assigned": seats["assigned"], "unassigned": seats["unassigned"]}


def plan_core(row: dict[str, Any]) -> dict[str, Any]:
    """What every shape of an AI plan shows."""
    return {
        "id": row["id"],
        "name": row["name"],
        "slug": row["slug"],
        "tier": row["tier"],
        "weeklyBudget": number(row["weekly_budget"]),
        "sessionBudget": number(row["session_budget"]),
        "purchasable": row["purchasable"],
    }


def entitled_plan(row: dict[str, Any]) -> dict[str, Any]:
    """A plan of the entitlements overview."""
    return {**plan_core(row), "seats": seat_counts(row["seats"])}


def entitlements(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "plans": [entitled_plan(row) for row in body["plans"]],
        "totalSeats": body["total_seats"],
        "assignedSeats": body["assigned_seats"],
        "weeklyUsage": number(body["weekly_usage"]),
        "monthlyUsage": number(body["monthly_usage"]),
        "lastRefresh": body["last_refresh"],
    }


def refreshed(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "refreshed": body["refreshed"],
        "plansUpdated": body["plans_updated"],
        "seatsUpdated": body["seats_updated"],
        "timestamp": body["timestamp"],
    }


def ai_plan(row: dict[str, Any]) -> dict[str, Any]:
    """A plan of the listing, with ``seats`` when the native row has them (``includeSeats=true``)."""
    shaped = {
        **plan_core(row),
        "icon": row["icon"],
        "billingCycle": billing_cycle(row["billing_cycle"]),
        "pricePerSeat": number(row["price_per_seat"]),
        "currency": row["currency"],
    }
    if "seats" in row:
        shaped["seats"] = seat_counts(row["seats"])
    return shaped


def assignment(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "username": row["username"],
        "displayName": row["display_name"],
        "assignedAt": row["assigned_at"],
        "assignedBy": row["assigned_by"],
        "weeklyCostUsed": number(row["weekly_cost_used"]),
        "sessionCostUsed": number(row["session_cost_used"]),
    }


def plan_model(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "tier": row["tier"]}


def ai_plan_detail(row: dict[str, Any]) -> dict[str, Any]:
    seats = row["seats"]
    return {
        **ai_plan(row),
        "seats": {**seat_counts(seats), "assignments": [assignment(a) for a in seats["assignments"]]},
        "models": [plan_model(m) for m in row["models"]],
    }


def subscription(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenantId": row["tenant_id"],
        "planSlug": row["plan_slug"],
        "billingCycle": billing_cycle(row["billing_cycle"]),
        "status": row["status"],
        "quantity": row["quantity"],
        "startDate": row["start_date"],
        "endDate": row["end_date"],
        "nextBillingDate": row["next_billing_date"],
        "pricePerSeat": number(row["price_per_seat"]),
        "totalAmount": number(row["total_amount"]),
        "currency": row["currency"],
    }


# --- the views -----------------------------------------------------------------------------------------------


class EntitlementsPlansView(SurfaceView):
    """A view of entitlements-plans-api.txt. A native error naming a native field names it as this API does
    (``field_names``)."""

    field_names: Mapping[str, str] = {}  # native field -> this API's

    def page_query(self, request: Request) -> dict[str, str]:
        """The native ``offset`` and ``limit`` of this API's ``start`` and ``limit`` (validated natively)."""
        return self.paging(request, offset="start", limit="limit", default_limit=PAGE_LIMIT)


# --- schema ----------------------------------------------------------------------------------------------------

PLATFORM_HEADER = OpenApiParameter(
    "X-Platform-Key", str, OpenApiParameter.HEADER,
    description="The platform to act in; needed when you belong to several (operators name the one they read).",
)
START = OpenApiParameter("start", OpenApiTypes.INT, description="Rows to skip, any number (default 0).")
LIMIT = OpenApiParameter("limit", OpenApiTypes.INT,
                         description=f"Rows at most, 1-{PAGE_LIMIT} (default {PAGE_LIMIT}).")
READ_ERRORS = {
    **ERROR_RESPONSES,
    **SERVICE_RESPONSES,
    403: error_response("Not an owner or admin of the platform (admin_required), or not a member of it "
                        "(not_a_member)."),
}


def _number(help_text: str) -> serializers.Field:
    return ExactNumberField(help_text=help_text)


def _seat_fields() -> dict[str, serializers.Field]:
    return {"total": serializers.IntegerField(help_text="Seats of the plan's current subscriptions."),
            "assigned": serializers.IntegerField(), "unassigned": serializers.IntegerField()}


def _plan_fields() -> dict[str, serializers.Field]:
    return {
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "slug": serializers.CharField(),
        "tier": serializers.CharField(help_text="everyday, advanced or strategic."),
        "weeklyBudget": _number("Per seat per calendar week."),
        "sessionBudget": _number("Per seat per 6-hour session."),
        "purchasable": serializers.BooleanField(),
    }


def _ai_plan_fields() -> dict[str, serializers.Field]:
    return {
        **_plan_fields(),
        "icon": serializers.CharField(),
        "billingCycle": serializers.CharField(help_text="monthly or annual."),
        "pricePerSeat": _number("Per seat per billing cycle."),
        "currency": serializers.CharField(),
    }


SeatCounts = inline_serializer(name="EntitlementsPlansSeats", fields=_seat_fields()).__class__
Link = inline_serializer(name="EntitlementsPlansLink", fields={"href": serializers.CharField()}).__class__

EntitlementsOut = inline_serializer(name="EntitlementsPlansEntitlements", fields={
    "plans": inline_serializer(name="EntitlementsPlansEntitledPlan", many=True, fields={
        **_plan_fields(), "seats": SeatCounts()}),
    "totalSeats": serializers.IntegerField(),
    "assignedSeats": serializers.IntegerField(),
    "weeklyUsage": _number("Spent by the platform's seats since Monday 00:00 (its time zone)."),
    "monthlyUsage": _number("Spent by the platform's seats since the 1st 00:00 (its time zone)."),
    "lastRefresh": serializers.DateTimeField(
        allow_null=True, help_text="When a provider last confirmed a seat subscription; null: never."),
})
RefreshOut = inline_serializer(name="EntitlementsPlansRefresh", fields={
    "refreshed": serializers.BooleanField(),
    "plansUpdated": serializers.IntegerField(help_text="AI plans whose seats changed."),
    "seatsUpdated": serializers.IntegerField(help_text="Seat subscriptions whose recorded state changed."),
    "timestamp": serializers.DateTimeField(help_text="When the refresh began reading Stripe."),
})
AIPlanPageOut = inline_serializer(name="EntitlementsPlansAIPlanPage", fields={
    "_links": inline_serializer(name="EntitlementsPlansAIPlanPageLinks", fields={
        "self": Link(help_text="This page."),
        "next": Link(required=False, help_text="The next page, when there is one."),
        "prev": Link(required=False, help_text="The previous page, when there is one."),
    }),
    "_embedded": inline_serializer(name="EntitlementsPlansAIPlanPageEmbedded", fields={
        "inf:ai-plan": inline_serializer(name="EntitlementsPlansAIPlan", many=True, fields={
            **_ai_plan_fields(),
            "seats": SeatCounts(required=False, help_text="With includeSeats=true only."),
        }),
    }),
    "start": serializers.IntegerField(help_text="Plans skipped before this page."),
    "count": serializers.IntegerField(help_text="Plans on this page."),
    "total": serializers.IntegerField(help_text="All the plans offered."),
})
AIPlanOut = inline_serializer(name="EntitlementsPlansAIPlanDetail", fields={
    **_ai_plan_fields(),
    "seats": inline_serializer(name="EntitlementsPlansAIPlanDetailSeats", fields={
        **_seat_fields(),
        "assignments": inline_serializer(name="EntitlementsPlansAssignment", many=True, fields={
            "username": serializers.CharField(),
            "displayName": serializers.CharField(help_text="The member's full name, or their username."),
            "assignedAt": serializers.DateTimeField(),
            "assignedBy": serializers.CharField(allow_null=True, help_text="Who assigned it; null: unknown."),
            "weeklyCostUsed": _number("Spent this week (the platform's time zone)."),
            "sessionCostUsed": _number("Spent in the open session (0 when none is open)."),
        }),
    }),
    "models": inline_serializer(name="EntitlementsPlansModel", many=True, fields={
        "id": serializers.CharField(help_text="The model's name, as usage names it."),
        "name": serializers.CharField(),
        "tier": serializers.CharField(),
    }),
})
SubscriptionsOut = inline_serializer(name="EntitlementsPlansSubscriptions", fields={
    "subscriptions": inline_serializer(name="EntitlementsPlansSubscription", many=True, fields={
        "id": serializers.UUIDField(),
        "tenantId": serializers.CharField(help_text="The platform's key."),
        "planSlug": serializers.CharField(),
        "billingCycle": serializers.CharField(help_text="monthly or annual."),
        "status": serializers.CharField(help_text="active, past_due, canceled or expired."),
        "quantity": serializers.IntegerField(),
        "startDate": serializers.DateTimeField(),
        "endDate": serializers.DateTimeField(allow_null=True, help_text="null: ongoing."),
        "nextBillingDate": serializers.DateTimeField(allow_null=True, help_text="null: none due."),
        "pricePerSeat": _number("The AI plan's price per seat per billing cycle."),
        "totalAmount": _number("pricePerSeat x quantity."),
        "currency": serializers.CharField(),
    }),
    "start": serializers.IntegerField(help_text="Subscriptions skipped before these."),
    "count": serializers.IntegerField(help_text="Subscriptions here."),
    "total": serializers.IntegerField(help_text="All that match the filters."),
})


# --- the endpoints ---------------------------------------------------------------------------------------------


class EntitlementsView(EntitlementsPlansView):
    @extend_schema(
        operation_id="ai_entitlements_retrieve", tags=[TAG], parameters=[PLATFORM_HEADER],
        summary="The platform's AI plans, seats and seat spending (owners and admins)",
        responses={200: EntitlementsOut, **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return self.reply(self.forward(request, NATIVE["entitlements"], query={}), entitlements)


class RefreshView(EntitlementsPlansView):
    @extend_schema(
        operation_id="ai_entitlements_refresh", tags=[TAG], parameters=[PLATFORM_HEADER], request=None,
        summary="Refresh the platform's seats from Stripe now (owners and admins)",
        description="Every seat subscription of the platform read from Stripe and recorded (done every 15 "
                    "minutes anyway); a platform that never bought seats through Stripe is answered without "
                    "calling it. No body, or an empty JSON object.",
        responses={
            200: RefreshOut, **READ_ERRORS, **BODY_RESPONSES,
            502: error_response("Stripe failed (payment_provider_error): what was read before is recorded."),
            503: error_response("Stripe is not configured here (payment_provider_not_configured), or the "
                                "database did not answer (service_unavailable: retry after Retry-After)."),
        },
    )
    def post(self, request: Request) -> Response:
        return self.reply(self.forward(request, NATIVE["refresh"], query={}), refreshed)


class AIPlansView(EntitlementsPlansView):
    field_names = {"include_seats": "includeSeats", "offset": "start"}

    @extend_schema(
        operation_id="ai_entitlements_plans_list", tags=[TAG],
        summary="The AI plans offered to the platform, a HAL page (owners and admins)",
        parameters=[
            PLATFORM_HEADER,
            OpenApiParameter("includeSeats", OpenApiTypes.BOOL,
                             description='"true": each plan with its seats on the platform (default false).'),
            START, LIMIT,
        ],
        responses={200: AIPlanPageOut, **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = self.page_query(request)
        if "includeSeats" in request.query_params:
            query["include_seats"] = request.query_params["includeSeats"]
        native = self.forward(request, NATIVE["plans"], query=query)
        return self.reply(native, lambda body: self.hal(request, body))

    def hal(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        start, limit = self.offset, self.limit
        plans = [ai_plan(row) for row in body["results"]]
        here = request.get_full_path()
        links = {"self": {"href": here}}
        if start + limit < body["count"]:
            links["next"] = {"href": replace_query_param(here, "start", start + limit)}
        if start:
            before = max(start - limit, 0)
            href = replace_query_param(here, "start", before) if before else remove_query_param(here, "start")
            links["prev"] = {"href": href}
        return {"_links": links, "_embedded": {"inf:ai-plan": plans}, "start": start, "count": len(plans),
                "total": body["count"]}


class AIPlanView(EntitlementsPlansView):
    field_names = {"ai_plan": "id"}

    @extend_schema(
        operation_id="ai_entitlements_plans_retrieve", tags=[TAG],
        summary="An AI plan with its seats on the platform, their assignments and its models (owners, admins)",
        parameters=[PLATFORM_HEADER, OpenApiParameter("id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                      description="The AI plan's id (or its slug).")],
        responses={200: AIPlanOut, **READ_ERRORS,
                   404: error_response("No such AI plan offered to the platform (ai_plan_not_found).")},
    )
    def get(self, request: Request, id: str) -> Response:  # noqa: A002 - the document's name
        return self.reply(self.forward(request, NATIVE["plan"], query={}, ai_plan=id), ai_plan_detail)


class AISubscriptionsView(EntitlementsPlansView):
    field_names = {"plan_slug": "planSlug", "billing_cycle": "billingCycle", "offset": "start"}

    @extend_schema(
        operation_id="ai_entitlements_subscriptions_list", tags=[TAG],
        summary="The platform's seat subscriptions, newest first (owners and admins)",
        parameters=[
            PLATFORM_HEADER,
            OpenApiParameter("planSlug", OpenApiTypes.STR, description="Only this AI plan's (its slug)."),
            OpenApiParameter("billingCycle", OpenApiTypes.STR, enum=list(BILLING_CYCLES),
                             description="Only this billing cycle."),
            OpenApiParameter("status", OpenApiTypes.STR, enum=["active", "past_due", "canceled", "expired"],
                             description="Only subscriptions in this state."),
            START, LIMIT,
        ],
        responses={200: SubscriptionsOut, **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        query = self.page_query(request)
        if "planSlug" in params:
            query["plan_slug"] = params["planSlug"]
        if "status" in params:  # the native statuses: the native filter refuses any other
            query["status"] = params["status"]
        if "billingCycle" in params:
            cycle = params["billingCycle"]
            if cycle and cycle not in BILLING_CYCLES:  # empty: not given, as natively
                message = f'"{cycle[:50]}" is not a valid choice: one of {", ".join(BILLING_CYCLES)}.'
                raise InvalidInput("Invalid input: billingCycle.", details={"billingCycle": [message]})
            query["billing_cycle"] = BILLING_CYCLES.get(cycle, cycle)
        native = self.forward(request, NATIVE["subscriptions"], query=query)
        return self.reply(native, self.listing)

    def listing(self, body: dict[str, Any]) -> dict[str, Any]:
        rows = [subscription(row) for row in body["results"]]
        return {"subscriptions": rows, "start": self.offset, "count": len(rows), "total": body["count"]}


urlpatterns = [
    path("ai-entitlements", EntitlementsView.as_view(), name="entitlements-plans-entitlements"),
    path("ai-entitlements/_refresh", RefreshView.as_view(), name="entitlements-plans-refresh"),
    path("ai-plans", AIPlansView.as_view(), name="entitlements-plans-ai-plans"),
    path("ai-plans/<str:id>", AIPlanView.as_view(), name="entitlements-plans-ai-plan"),
    path("ai-subscriptions", AISubscriptionsView.as_view(), name="entitlements-plans-ai-subscriptions"),
]
