"""A baseline for bench/webhooks.py, routed only when ``BENCH_ENDPOINTS`` is on (see billing_service/urls.py):
public like the Stripe webhook view, only that view's signature check, then constant JSON."""

from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from payments.providers import stripe as stripe_provider


@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def webhook_verify(request: Request) -> Response:
    stripe_provider.webhook_event_verify(
        payload=request.body, signature_header=request.headers.get(stripe_provider.SIGNATURE_HEADER)
    )
    return Response({"received": True})
