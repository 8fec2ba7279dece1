from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.views import TenantViewSet
from accounts.errors import NotAMember
from billing_service.pagination import PageQuerySerializer, paginate_newest_first
from billing_service.schema import (
    ERROR_RESPONSES,
    error_response,
    extend_schema,
    filterset_parameters,
    paginated,
)
from billing_service.validation import validated, validated_filters
from credits import selectors as credit_selectors
from credits import services as credit_services
from payments import selectors, services
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
from payments.models import WebhookProvider
from payments.providers import stripe as stripe_provider


class CheckoutViewSet(TenantViewSet):
    """Starts a purchase: a pending order and the provider's checkout page to redirect the customer to. The
    order is paid (and credited) when the provider's webhook confirms the payment, not on return to
    `success_url`."""

    @extend_schema(
        operation_id="billing_checkout_create",
        summary="Start a checkout: a pending order and the provider's payment page",
        description=(
            "`type` `top_up`: a one-off purchase of `amount` USD of credits. `type` `subscription` (channel "
            "`stripe`): `plan_id` (an active, purchasable plan) and `billing_cycle` (`monthly`/`yearly`, a "
            "cycle the plan sells through a Stripe price); the order costs the plan's price for the cycle and "
            "the subscription starts when Stripe confirms it (webhooks). An account that already has a current "
            "subscription gets a 409 `subscription_exists` (change plans in the billing portal). Channel "
            "`creem` sells subscriptions only (Creem checkouts are product-backed): `plan_id` (id or slug) must "
            "name a plan with a `creem_product_id`, `billing_cycle` defaults to `monthly`, and a `top_up` is a "
            "400 `checkout_type_not_available`; Creem has no cancel page (`cancel_url` is checked, not sent). "
            "`save_payment_method` (Stripe top-ups only, default false): Stripe also keeps the card for "
            "off-session charges, on the caller's Stripe customer (created at checkout when there is none), and "
            "it becomes the payment method auto-recharge charges once the payment succeeds. `success_url` "
            "and `cancel_url` must be on one of the platform's allowed origins (no open redirects)."
        ),
        request=CheckoutInputSerializer,
        responses={
            201: CheckoutOutputSerializer,
            409: error_response(
                "A subscription checkout for an account that already has a current subscription "
                "(subscription_exists; change plans in the billing portal)."
            ),
            502: error_response("The provider refused or failed (payment_provider_error); the order is failed."),
            503: error_response("The provider is not configured here (payment_provider_not_configured)."),
            **ERROR_RESPONSES,
        },
        tags=["payments"],
    )
    def create(self, request: Request) -> Response:
        tenant = self.tenant
        if tenant.membership is None:
            raise NotAMember("Only members of the platform can buy for themselves.")
        data = validated(CheckoutInputSerializer, request.data)
        account = credit_selectors.account_for(platform=tenant.platform, user=request.user)
        account = account or credit_services.account_ensure(platform=tenant.platform, user=request.user)
        order = services.checkout_create(
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
        )
        return Response(CheckoutOutputSerializer(order).data, status=status.HTTP_201_CREATED)


class PortalViewSet(TenantViewSet):
    """The payment provider's billing portal, where a customer manages their subscription and payment
    methods (change or cancel the plan, invoices). Changes come back through the provider's webhooks."""

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
        if tenant.membership is None:
            raise NotAMember("Only members of the platform have a billing portal.")
        data = validated(PortalInputSerializer, request.data)
        account = credit_selectors.account_for(platform=tenant.platform, user=request.user)
        account = account or credit_services.account_ensure(platform=tenant.platform, user=request.user)
        url = services.billing_portal_create(platform=tenant.platform, account=account, return_url=data["return_url"])
        return Response(PortalOutputSerializer({"url": url}).data)


class OrderViewSet(TenantViewSet):
    """The caller's own orders in the platform, newest first."""

    @extend_schema(
        operation_id="billing_orders_list",
        summary="Your orders, newest first",
        parameters=[*filterset_parameters(OrderFilterSet), PageQuerySerializer],
        responses={200: paginated(OrderSerializer, "PaginatedOrderList"), **ERROR_RESPONSES},
        tags=["payments"],
    )
    def list(self, request: Request) -> Response:
        rows = selectors.order_list(platform=self.tenant.platform, user=request.user)
        rows = validated_filters(OrderFilterSet, request, rows).qs
        query = validated(PageQuerySerializer, request.query_params)
        return Response(paginate_newest_first(request, rows, query, OrderSerializer))

    @extend_schema(
        operation_id="billing_orders_retrieve",
        summary="One of your orders",
        parameters=[OpenApiParameter("order_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: OrderSerializer, **ERROR_RESPONSES},
        tags=["payments"],
    )
    def retrieve(self, request: Request, order_id: str) -> Response:
        order = selectors.order_get(order_id=order_id, platform=self.tenant.platform, user=request.user)
        if order is None:
            raise OrderNotFound()
        return Response(OrderSerializer(order).data)


class StripeWebhookView(APIView):
    """Stripe's deliveries. Public: authenticated by the `Stripe-Signature` header instead."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    tenant_scoped = False  # no X-Platform-Key (billing_service.schema)
    public_endpoint = True  # no token: no 401/403 (billing_service.schema)

    @extend_schema(
        operation_id="billing_webhooks_stripe_create",
        summary="Stripe webhook endpoint (public; verified by signature)",
        description=(
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
            "`payment_intent.payment_failed` of an auto-recharge marks it failed."
        ),
        auth=[],
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter(
                stripe_provider.SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=True,
                description="`t=<unix time>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">`.",
            )
        ],
        responses={
            200: WebhookReceiptSerializer,
            400: error_response("Missing, invalid or stale signature (invalid_signature), or not an event."),
            500: error_response("Stored but not processed (webhook_processing_failed): Stripe will retry."),
            503: error_response("Webhooks are not configured here (payment_provider_not_configured)."),
        },
        tags=["payments"],
    )
    def post(self, request: Request) -> Response:
        event = stripe_provider.webhook_event_verify(
            payload=request.body, signature_header=request.headers.get(stripe_provider.SIGNATURE_HEADER)
        )
        outcome = services.webhook_event_receive(provider=WebhookProvider.STRIPE, event=event)
        return Response({"received": True, "event_id": outcome.event_id, "status": outcome.status,
                         "duplicate": outcome.duplicate})  # WebhookReceiptSerializer's shape

