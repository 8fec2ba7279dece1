"""Creem's webhook endpoint (the rest of the payments API is in ``payments.api.views``)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_service.schema import error_response
from payments import services
from payments.api.serializers import WebhookReceiptSerializer
from payments.models import WebhookProvider
from payments.providers import creem as creem_provider


class CreemWebhookView(APIView):
    """Creem's deliveries. Public: authenticated by the `creem-signature` header instead."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    tenant_scoped = False  # no X-Platform-Key (billing_service.schema)
    public_endpoint = True  # no token: no 401/403 (billing_service.schema)

    @extend_schema(
        operation_id="billing_webhooks_creem_create",
        summary="Creem webhook endpoint (public; verified by signature)",
        description=(
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
        ),
        auth=[],
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter(
                creem_provider.SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=True,
                description="Hex HMAC-SHA256 of the raw request body, keyed with the webhook secret.",
            )
        ],
        responses={
            200: WebhookReceiptSerializer,
            400: error_response("Missing or invalid signature (invalid_signature), or not an event."),
            500: error_response("Stored but not processed (webhook_processing_failed): Creem will retry."),
            503: error_response("Webhooks are not configured here (payment_provider_not_configured)."),
        },
        tags=["payments"],
    )
    def post(self, request: Request) -> Response:
        event = creem_provider.webhook_event_verify(
            payload=request.body, signature_header=request.headers.get(creem_provider.SIGNATURE_HEADER)
        )
        # Stored as received, plus "type" (Creem calls it "eventType"), which the shared event table reads.
        outcome = services.webhook_event_receive(
            provider=WebhookProvider.CREEM, event={**event, "type": event["eventType"]}
        )
        return Response({"received": True, "event_id": outcome.event_id, "status": outcome.status,
                         "duplicate": outcome.duplicate})  # WebhookReceiptSerializer's shape
