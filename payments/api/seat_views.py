"""Seats on AI plans, the payments side of the API (owners and admins of the platform): the platform's seat
subscriptions and a change of a Stripe subscription's quantity (``/ai-subscriptions/``), and a refresh of them from
Stripe (``/entitlements/refresh/``). They live here, not in the entitlements app's API, because they call Stripe
(``payments.seat_sync``). Seats are bought through ``POST /checkout/`` (``type: "seats"``)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import IsPlatformAdmin, TenantGenericViewSet, TenantViewSet
from billing_service.pagination import CountedPagination
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema, paginated
from billing_service.validation import validated
from entitlements.models import SeatSubscription
from payments import seat_sync, selectors
from payments.api.serializers import (
    EntitlementsRefreshInputSerializer,
    EntitlementsRefreshSerializer,
    SeatQuantityChangeSerializer,
    SeatQuantityInputSerializer,
    SeatSubscriptionSerializer,
)
from payments.errors import SeatSubscriptionNotFound
from payments.filters import SeatSubscriptionFilterSet

SUBSCRIPTION_ID = OpenApiParameter("subscription_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class SeatSubscriptionViewSet(ListModelMixin, TenantGenericViewSet):
    """The platform's seat subscriptions: the seats it holds on AI plans, bought through Stripe or recorded by an
    operator (a contract paid outside Stripe). Owners and admins."""

    serializer_class = SeatSubscriptionSerializer
    filterset_class = SeatSubscriptionFilterSet
    pagination_class = CountedPagination
    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    lookup_url_kwarg = "subscription_id"

    def get_queryset(self) -> QuerySet[SeatSubscription]:
        return selectors.seat_subscription_list(platform=self.tenant.platform)

    def get_object(self) -> SeatSubscription:
        found = selectors.seat_subscription_get(platform=self.tenant.platform,
                                                subscription_id=self.kwargs[self.lookup_url_kwarg])
        if found is None:
            raise SeatSubscriptionNotFound()
        return found

    @extend_schema(
        operation_id="billing_ai_subscriptions_list",
        summary="The platform's seat subscriptions (owners, admins)",
        description=(
            "Newest first; `plan_slug`, `billing_cycle` (`monthly`/`yearly`) and `status` (`active`, `past_due`, "
            "`canceled`, `expired`) narrow it. `price_per_seat` is the AI plan's price per seat per cycle, "
            "`total_amount` that times `quantity`, both in dollars."
        ),
        responses={200: paginated(SeatSubscriptionSerializer, "PaginatedSeatSubscriptionList"), **ERROR_RESPONSES},
        tags=["seats"],
    )
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        operation_id="billing_ai_subscriptions_retrieve",
        summary="One of the platform's seat subscriptions (owners, admins)",
        parameters=[SUBSCRIPTION_ID],
        responses={200: SeatSubscriptionSerializer, **ERROR_RESPONSES},
        tags=["seats"],
    )
    def retrieve(self, request: Request, subscription_id: str) -> Response:
        return Response(SeatSubscriptionSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="billing_ai_subscriptions_partial_update",
        summary="Ask Stripe for another number of seats (owners, admins)",
        description=(
            "Sets the quantity of the Stripe subscription's item (prorated as Stripe does: "
            "`proration_behavior` `create_prorations`). Answered 202: the subscription as recorded, unchanged, "
            "and the `requested_quantity`; the recorded quantity changes when Stripe's webhook (or a refresh) "
            "confirms it. A quantity below the seats assigned keeps the assignments: the plan is then "
            "over-assigned and new assignments are refused. An operator's contract (`provider` `manual`) is a 409 "
            "`seat_subscription_manual` (the operator changes it); an ended subscription a 409 "
            "`seat_subscription_ended`."
        ),
        parameters=[SUBSCRIPTION_ID],
        request=SeatQuantityInputSerializer,
        responses={
            202: SeatQuantityChangeSerializer,
            409: error_response("An operator's contract (seat_subscription_manual) or an ended subscription "
                                "(seat_subscription_ended)."),
            502: error_response("Stripe refused or failed (payment_provider_error): nothing changed."),
            503: error_response("Stripe is not configured here (payment_provider_not_configured)."),
            **ERROR_RESPONSES,
        },
        tags=["seats"],
    )
    def partial_update(self, request: Request, subscription_id: str) -> Response:
        data = validated(SeatQuantityInputSerializer, request.data)
        subscription = seat_sync.seat_quantity_change(
            platform=self.tenant.platform, subscription_id=subscription_id, quantity=data["quantity"]
        )
        body = {"subscription": subscription, "requested_quantity": data["quantity"]}
        return Response(SeatQuantityChangeSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class EntitlementsRefreshViewSet(TenantViewSet):
    """Reads the platform's seat subscriptions from Stripe now (also done every 15 minutes) and records what
    changed: quantities and statuses, and subscriptions of seats its webhooks never brought. Owners and admins."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    @extend_schema(
        operation_id="billing_entitlements_refresh_create",
        summary="Refresh the platform's seats from Stripe (owners, admins)",
        description=(
            "Every Stripe subscription of the platform's seat customers that is of seats, and every one recorded, "
            "read from Stripe and recorded as the webhooks would (a state never overrides one Stripe made after "
            "the refresh began). `plans_updated`: AI plans whose seats changed; `seats_updated`: seat "
            "subscriptions whose recorded state changed. A platform that never bought seats through Stripe "
            "is answered without calling it."
        ),
        request=EntitlementsRefreshInputSerializer,
        responses={
            200: EntitlementsRefreshSerializer,
            502: error_response("Stripe failed (payment_provider_error): what was read before is recorded."),
            503: error_response("Stripe is not configured here (payment_provider_not_configured)."),
            **ERROR_RESPONSES,
        },
        tags=["seats"],
    )
    def create(self, request: Request) -> Response:
        validated(EntitlementsRefreshInputSerializer, request.data)
        result = seat_sync.seat_subscriptions_refresh(platform=self.tenant.platform)
        return Response(EntitlementsRefreshSerializer({
            "refreshed": True, "plans_updated": result.plans_updated, "seats_updated": result.seats_updated,
            "timestamp": result.timestamp,
        }).data)
