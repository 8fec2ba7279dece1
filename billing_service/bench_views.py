"""Baselines for the benchmarks, routed only when ``BENCH_ENDPOINTS`` is on (see billing_service/urls.py):
``noop`` (bench/usage_http.py), the API's own authentication (the same classes as every endpoint), a permission
check and constant JSON, nothing else; ``webhook_verify`` (bench/webhooks.py), public like the Stripe webhook
view, only the Stripe signature check of that view, then constant JSON."""

from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response


@api_view(["GET", "POST"])
@permission_classes([IsAuthenticated])
def noop(request: Request) -> Response:
    return Response({"ok": True})


@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def webhook_verify(request: Request) -> Response:
    from payments.providers import stripe as stripe_provider

    stripe_provider.webhook_event_verify(
        payload=request.body, signature_header=request.headers.get(stripe_provider.SIGNATURE_HEADER)
    )
    return Response({"received": True})
