"""The payments API: checkout, the billing portal, the caller's orders, and the providers' webhooks (one view,
parametrised by provider). The account endpoints are in ``account_views``, the saved card in
``payment_method_views``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.views import IsPlatformMember, TenantGenericViewSet
from accounts.throttles import AddressRateThrottle
from billing_service.pagination import PageOrCursorPagination
from billing_service.schema import (
    ERROR_RESPONSES,
    BillingAutoSchema,
    error_response,
    extend_schema,
    paginated,
)
from billing_service.validation import validated
from credits import selectors as credit_selectors
from credits import services as credit_services
from payments import checkout, selectors
from payments.api.serializers import (
    CheckoutInputSerializer,
    CheckoutOutputSerializer,
    OrderSerializer,
    PortalInputSerializer,
    PortalOutputSerializer,
    WebhookReceiptSerializer,
)
from payments.errors import OrderNotFound
from payments.filters import OrderFilterSet
from payments.models import Order, OrderType, WebhookProvider
from payments.providers import creem as creem_provider
from payments.providers import stripe as stripe_provider
from payments.webhooks.events import webhook_event_receive


class CheckoutViewSet(TenantGenericViewSet):
    """Starts a purchase: a pending order and the provider's checkout page to redirect the customer to. The
    order is paid (and credited) when the provider's webhook confirms the payment, not on return to
    `success_url`."""

    serializer_class = CheckoutOutputSerializer
    permission_classes = [IsAuthenticated, IsPlatformMember]
    not_a_member_message = "Only members of the platform can buy for themselves."

    @extend_schema(
        operation_id="billing_checkout_create",
        summary="Start a checkout: a pending order and the provider's payment page",
        description=(
            "`type` `top_up`: a one-off purchase of `amount` USD of credits. `type` `subscription` (channel "
            "`stripe`): `plan_id` (an active, purchasable plan) and `billing_cycle` (`monthly`/`yearly`, default "
            "`monthly`, a cycle the plan sells through a Stripe price); the order costs the plan's price for the cycle and "
            "the subscription starts when Stripe confirms it (webhooks). An account that already has a current "
            "subscription gets a 409 `subscription_exists` (change plans in the billing portal). Channel "
            "`creem` sells subscriptions only (Creem checkouts are product-backed): `plan_id` (id or slug) must "
            "name a plan with a `creem_product_id`, `billing_cycle` defaults to `monthly`, and a `top_up` is a "
            "400 `checkout_type_not_available`; Creem has no cancel page (`cancel_url` is checked, not sent). "
            "`save_payment_method` (Stripe top-ups only, default false): Stripe also keeps the card for "
            "off-session charges, on the caller's Stripe customer (created at checkout when there is none), and "
            "it becomes the payment method auto-recharge charges once the payment succeeds. `type` `seats` "
            "(owners and admins of the platform; channel `stripe`): `ai_plan_id` (an AI plan's id or slug, offered "
            "to the platform, active, purchasable, with a Stripe price) and `quantity` (1 to 10000); the order "
            "(no credits) costs the price per seat times the quantity, the Stripe subscription charges that many "
            "units of the plan's price, and the seats are recorded when Stripe's webhooks confirm them; a platform "
            "with a current Stripe subscription of the plan's seats gets a 409 `seat_subscription_exists` (change "
            "its quantity: `PATCH /api/billing/ai-subscriptions/{id}/`). Fields of another type are refused. "
            "`success_url` and `cancel_url` must be on one of the platform's allowed origins (no open redirects). "
            "`coupon`: a discount coupon's code (not for seats): the order costs the discounted price (a top-up "
            "still buys `amount` credits) and the provider applies the same discount; the coupon counts as redeemed "
            "when the payment succeeds. Refused: 400 `coupon_unknown`, `coupon_inactive`, `coupon_not_yet_valid`, "
            "`coupon_expired`, `coupon_not_a_discount` (a credits coupon: redeem it), `coupon_not_applicable` "
            "(its plans, top-ups only, seats, or less than 0.50 USD left to pay); 409 `coupon_exhausted`, "
            "`coupon_already_redeemed`, `coupon_first_purchase_only`; 429 `coupon_attempts_exceeded` (Retry-After)."
        ),
        request=CheckoutInputSerializer,
        responses={
            201: CheckoutOutputSerializer,
            409: error_response(
                "A subscription checkout for an account that already has a current subscription "
                "(subscription_exists; change plans in the billing portal), or a seats checkout for a plan the "
                "platform holds a current Stripe subscription of (seat_subscription_exists); a coupon used up "
                "(coupon_exhausted, coupon_already_redeemed, coupon_first_purchase_only)."
            ),
            429: error_response("Too many coupon codes tried in the last hour (coupon_attempts_exceeded); see the "
                                "Retry-After header."),
            502: error_response("The provider refused or failed (payment_provider_error); the order is failed."),
            503: error_response("The provider is not configured here (payment_provider_not_configured)."),
            **ERROR_RESPONSES,
        },
        tags=["payments"],
    )
    def create(self, request: Request) -> Response:
        tenant = self.tenant
        if isinstance(request.data, dict) and request.data.get("type") == OrderType.SEATS:
            tenant.require_admin()  # seats are bought for the platform: by its owners and admins (else 403)
        data = validated(CheckoutInputSerializer, request.data)
        account = credit_selectors.account_for(platform=tenant.platform, user=request.user)
        account = account or credit_services.account_ensure(platform=tenant.platform, user=request.user)
        order = checkout.checkout_create(
            platform=tenant.platform,
            user=request.user,
            account=account,
            channel=data["channel"],
            order_type=data["type"],
            amount=data.get("amount"),
            success_url=data["success_url"],
            cancel_url=data["cancel_url"],
            plan_id=data.get("plan_id"),
            billing_cycle=data.get("billing_cycle"),
            save_payment_method=data.get("save_payment_method", False),
            ai_plan_id=data.get("ai_plan_id"),
            quantity=data.get("quantity"),
            coupon=data.get("coupon"),
        )
        return Response(CheckoutOutputSerializer(order).data, status=status.HTTP_201_CREATED)


class PortalViewSet(TenantGenericViewSet):
    """The payment provider's billing portal, where a customer manages their subscription and payment
    methods (change or cancel the plan, invoices). Changes come back through the provider's webhooks."""

    serializer_class = PortalOutputSerializer
    permission_classes = [IsAuthenticated, IsPlatformMember]
    not_a_member_message = "Only members of the platform have a billing portal."

    @extend_schema(
        operation_id="billing_portal_create",
        summary="Open the provider's billing portal for your subscription",
        description=(
            "A short-lived Stripe Billing Portal session for the caller's Stripe customer (known once they "
            "have subscribed or paid through Stripe checkout). `return_url` must be on one of the platform's "
            "allowed origins. 409 `no_billing_customer` when the caller has no Stripe customer yet."
        ),
        request=PortalInputSerializer,
        responses={
            200: PortalOutputSerializer,
            409: error_response("You have no Stripe customer yet (no_billing_customer): subscribe or pay first."),
            502: error_response("The provider refused or failed (payment_provider_error)."),
            503: error_response("The provider is not configured here (payment_provider_not_configured)."),
            **ERROR_RESPONSES,
        },
        tags=["payments"],
    )
    def create(self, request: Request) -> Response:
        tenant = self.tenant
        data = validated(PortalInputSerializer, request.data)
        account = credit_selectors.account_for(platform=tenant.platform, user=request.user)
        account = account or credit_services.account_ensure(platform=tenant.platform, user=request.user)
        url = checkout.billing_portal_create(platform=tenant.platform, account=account, return_url=data["return_url"])
        return Response(PortalOutputSerializer({"url": url}).data)


class OrderViewSet(ListModelMixin, TenantGenericViewSet):
    """The caller's own orders in the platform, newest first."""

    serializer_class = OrderSerializer
    filterset_class = OrderFilterSet
    pagination_class = PageOrCursorPagination
    lookup_url_kwarg = "order_id"

    def get_queryset(self) -> QuerySet[Order]:
        return selectors.order_list(platform=self.tenant.platform, user=self.request.user)

    def get_object(self) -> Order:
        order_id = self.kwargs[self.lookup_url_kwarg]
        order = selectors.order_get(order_id=order_id, platform=self.tenant.platform, user=self.request.user)
        if order is None:
            raise OrderNotFound()
        return order

    @extend_schema(
        operation_id="billing_orders_list",
        summary="Your orders, newest first",
        responses={200: paginated(OrderSerializer, "PaginatedOrderList"), **ERROR_RESPONSES},
        tags=["payments"],
    )
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        operation_id="billing_orders_retrieve",
        summary="One of your orders",
        parameters=[OpenApiParameter("order_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: OrderSerializer, **ERROR_RESPONSES},
        tags=["payments"],
    )
    def retrieve(self, request: Request, order_id: str) -> Response:
        return Response(OrderSerializer(self.get_object()).data)


# --- the providers' webhooks ------------------------------------------------------------------------------


STRIPE_WEBHOOK_DESCRIPTION = (
    "Accepts a Stripe event only with a valid `Stripe-Signature` header (HMAC-SHA256 with "
    "`STRIPE_WEBHOOK_SECRET`, timestamp within the tolerance, 300 s by default). Every event is stored "
    "once by its id, then processed in one transaction. A redelivery is a 200 that changes nothing; an "
    "unhandled type is stored and answered 200; a permanent disagreement with the order (amount, "
    "currency) is recorded, flags the order and is answered 200; a failure that a later delivery may "
    "get past (unknown order, database error) is recorded and answered 500 so Stripe retries. "
    "Handled: `checkout.session.completed`, `checkout.session.async_payment_succeeded`, "
    "`checkout.session.async_payment_failed` (top-ups and subscription checkouts), `invoice.paid` and "
    "`invoice.payment_succeeded` (either or both: the "
    "plan's credits for the period, once; unused plan credits of the last period roll over per the "
    "plan's policy, the rest leave in a `rollover` row; purchased credits never expire), "
    "`customer.subscription.created/updated/deleted` (status, plan, period, trial, cancellation; an "
    "older event never overrides a newer one; an upgrade within the period grants the new plan's extra "
    "credits for it once), `invoice_payment.paid` (the payment intent of a renewal, which current API "
    "versions leave out of the invoice: its refunds are matched by it), "
    "`charge.refunded` (of an order or of a renewal invoice: a negative `refund` "
    "row for the newly refunded part; credits already spent are not taken below zero: the shortfall is "
    "recorded on the order, which is flagged for review, or on the plan period), and the events that "
    "save a card for auto-recharge: `payment_intent.succeeded` (of a top-up with "
    "`save_payment_method`; of an auto-recharge, it credits the recharge), `setup_intent.succeeded` and "
    "`checkout.session.completed` of a setup session opened by `POST /api/billing/payment-method/`; "
    "`payment_intent.payment_failed` of an auto-recharge marks it failed. Events about seats (their "
    "object's `metadata.kind` is `seats`): `checkout.session.completed` of a seats checkout (the order is paid and "
    "its seats recorded), `customer.subscription.created/updated/deleted` (the seats' quantity, status and dates; "
    "an older event never overrides a newer one; a subscription ended with no other seats of its AI plan frees "
    "the plan's assignments), their invoices (stored, ignored)."
)
CREEM_WEBHOOK_DESCRIPTION = (
    "Accepts a Creem event only with a valid `creem-signature` header (hex HMAC-SHA256 of the raw "
    "body keyed with `CREEM_WEBHOOK_SECRET`). Every event is stored once by its id, then processed "
    "in one transaction. A redelivery is a 200 that changes nothing; an unhandled type is stored and "
    "answered 200; a permanent disagreement with the order is recorded, flags the order and is "
    "answered 200; a failure that a later delivery may get past (unknown order, a refund before its "
    "grant, database error) is recorded and answered 500 so Creem retries. Handled: "
    "`checkout.completed`, `subscription.active`, `subscription.paid` (each paid period grants the "
    "plan's credits once), `subscription.canceled`, `subscription.expired` (past due: not final in "
    "Creem), `subscription.update`, `refund.created` (takes back the refunded share of that period's "
    "credits)."
)


def _stripe_event(payload: bytes, signature_header: str | None) -> dict[str, Any]:
    return stripe_provider.webhook_event_verify(payload=payload, signature_header=signature_header)


def _creem_event(payload: bytes, signature_header: str | None) -> dict[str, Any]:
    event = creem_provider.webhook_event_verify(payload=payload, signature_header=signature_header)
    # Stored as received, plus "type" (Creem calls it "eventType"), which the shared event table reads.
    return {**event, "type": event["eventType"]}


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A provider's webhook: how its deliveries are verified (``verify``: the raw body and the signature
    header to the event, or a 400), and how the endpoint is documented."""

    provider: str  # payments.models.WebhookProvider
    name: str
    verify: Callable[[bytes, str | None], dict[str, Any]]
    signature_header: str
    signature_help: str
    signature_400: str
    description: str


WEBHOOK_ENDPOINTS = {
    endpoint.provider: endpoint
    for endpoint in [
        WebhookEndpoint(
            provider=WebhookProvider.STRIPE,
            name="Stripe",
            verify=_stripe_event,
            signature_header=stripe_provider.SIGNATURE_HEADER,
            signature_help='`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.',
            signature_400="Missing, invalid or stale signature (invalid_signature), or not an event.",
            description=STRIPE_WEBHOOK_DESCRIPTION,
        ),
        WebhookEndpoint(
            provider=WebhookProvider.CREEM,
            name="Creem",
            verify=_creem_event,
            signature_header=creem_provider.SIGNATURE_HEADER,
            signature_help="Hex HMAC-SHA256 of the raw request body, keyed with the webhook secret.",
            signature_400="Missing or invalid signature (invalid_signature), or not an event.",
            description=CREEM_WEBHOOK_DESCRIPTION,
        ),
    ]
}


class WebhookSchema(BillingAutoSchema):
    """The operation of one provider's webhook (``view.provider``), from its ``WebhookEndpoint``."""

    @property
    def endpoint(self) -> WebhookEndpoint:
        return WEBHOOK_ENDPOINTS[self.view.provider]

    def get_operation_id(self) -> str:
        return f"billing_webhooks_{self.endpoint.provider}_create"

    def get_summary(self) -> str:
        return f"{self.endpoint.name} webhook endpoint (public; verified by signature)"

    def get_description(self) -> str:
        return self.endpoint.description

    def get_tags(self) -> list[str]:
        return ["payments"]

    def get_auth(self) -> list:
        return []

    def get_request_serializer(self) -> Any:
        return {"application/json": OpenApiTypes.OBJECT}

    def get_override_parameters(self) -> list:
        endpoint = self.endpoint
        return [
            OpenApiParameter(endpoint.signature_header, str, OpenApiParameter.HEADER, required=True,
                             description=endpoint.signature_help),
            *super().get_override_parameters(),
        ]

    def get_response_serializers(self) -> Any:
        endpoint = self.endpoint
        return {
            200: WebhookReceiptSerializer,
            400: error_response(endpoint.signature_400),
            500: error_response(
                f"Stored but not processed (webhook_processing_failed): {endpoint.name} will retry."
            ),
            503: error_response("Webhooks are not configured here (payment_provider_not_configured)."),
        }


class ProviderWebhookView(APIView):
    """A payment provider's deliveries (``provider``: routed once per entry of ``WEBHOOK_ENDPOINTS``). Public:
    authenticated by the provider's signature header instead. Every event is stored once by its id, then
    processed (``webhook_event_receive``)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AddressRateThrottle]  # RATE_LIMITS["webhooks"] per client address
    throttle_scope = "webhooks"
    tenant_scoped = False  # no X-Platform-Key (billing_service.schema)
    public_endpoint = True  # no token: no 401/403 (billing_service.schema)
    schema = WebhookSchema()
    provider: str = ""  # as_view(provider=...)

    def get_view_name(self) -> str:
        return f"{WEBHOOK_ENDPOINTS[self.provider].name} Webhook"

    def get_view_description(self, html: bool = False) -> str:
        endpoint = WEBHOOK_ENDPOINTS[self.provider]
        return (f"{endpoint.name}'s deliveries. Public: authenticated by the `{endpoint.signature_header}` header "
                "instead.")

    def post(self, request: Request) -> Response:
        endpoint = WEBHOOK_ENDPOINTS[self.provider]
        event = endpoint.verify(request.body, request.headers.get(endpoint.signature_header))
        outcome = webhook_event_receive(provider=endpoint.provider, event=event)
        return Response({"received": True, "event_id": outcome.event_id, "status": outcome.status,
                         "duplicate": outcome.duplicate})  # WebhookReceiptSerializer's shape
