"""The caller's payment method for auto-recharge: open Stripe's page to save one, see it, remove it
(``payments.payment_methods``; the rest of the payments API is in ``payments.api.views``)."""

from __future__ import annotations

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.views import TenantViewSet
from accounts.errors import NotAMember
from billing_service.schema import ERROR_RESPONSES, error_response, extend_schema
from billing_service.validation import validated
from credits import selectors as credit_selectors
from payments import payment_methods
from payments.api.serializers import (
    PaymentMethodSerializer,
    PaymentMethodSetupInputSerializer,
    PaymentMethodSetupOutputSerializer,
)
from payments.errors import PaymentMethodNotFound


class PaymentMethodViewSet(TenantViewSet):
    """The card auto-recharge charges: the caller's own (any member may keep one: it is their card). It is
    saved by Stripe's webhooks once the customer completes Stripe's page, or a top-up checkout with
    `save_payment_method`."""

    def _member(self) -> None:
        if self.tenant.membership is None:
            raise NotAMember("Only members of the platform keep a payment method.")

    @extend_schema(
        operation_id="billing_payment_method_create",
        summary="Open Stripe's page to save a card for auto-recharge",
        description=(
            "A Stripe Checkout Session in `setup` mode (cards) for the caller's Stripe customer (one is created "
            "there when the caller has none yet). Nothing is charged. Once the customer completes it, Stripe's "
            "webhooks (`setup_intent.succeeded`, `checkout.session.completed`) save the card, which replaces any "
            "saved before; `has_payment_method` on the account then turns true. `success_url` and `cancel_url` "
            "must be on one of the platform's allowed origins."
        ),
        request=PaymentMethodSetupInputSerializer,
        responses={
            201: PaymentMethodSetupOutputSerializer,
            502: error_response("Stripe refused or failed (payment_provider_error)."),
            503: error_response("Stripe is not configured here (payment_provider_not_configured)."),
            **ERROR_RESPONSES,
        },
        tags=["payments"],
    )
    def create(self, request: Request) -> Response:
        self._member()
        data = validated(PaymentMethodSetupInputSerializer, request.data)
        url = payment_methods.payment_method_setup_create(
            platform=self.tenant.platform, user=request.user,
            customer_email=getattr(request.user, "email", "") or "",
            success_url=data["success_url"], cancel_url=data["cancel_url"],
        )
        return Response(PaymentMethodSetupOutputSerializer({"url": url}).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="billing_payment_method_retrieve",
        summary="Your saved payment method",
        description="The card auto-recharge charges (brand and last 4 digits only). 404 "
        "`payment_method_not_found` when none is saved.",
        responses={200: PaymentMethodSerializer, **ERROR_RESPONSES},
        tags=["payments"],
    )
    def retrieve(self, request: Request) -> Response:
        self._member()
        account = credit_selectors.account_for(platform=self.tenant.platform, user=request.user)
        saved = payment_methods.payment_method_get(account=account)
        if saved is None:
            raise PaymentMethodNotFound()
        return Response(PaymentMethodSerializer(saved).data)

    @extend_schema(
        operation_id="billing_payment_method_destroy",
        summary="Remove your saved payment method (auto-recharge turns off)",
        description="Forgets the card here and turns auto-recharge off; the card stays on your Stripe customer "
        "(it may pay your subscription; remove it there through the billing portal). 404 "
        "`payment_method_not_found` when none is saved.",
        responses={204: None, **ERROR_RESPONSES},
        tags=["payments"],
    )
    def destroy(self, request: Request) -> Response:
        self._member()
        account = credit_selectors.account_for(platform=self.tenant.platform, user=request.user)
        payment_methods.payment_method_remove(account=account)
        return Response(status=status.HTTP_204_NO_CONTENT)
