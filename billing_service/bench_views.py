"""A baseline for the benchmarks, routed only when ``BENCH_ENDPOINTS`` is on (see billing_service/urls.py):
``noop`` (bench/usage_http.py), the API's own authentication (the same classes as every endpoint), a permission
check and constant JSON, nothing else. (The webhook baseline is payments.api.bench_views.)"""

from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response


@api_view(["GET", "POST"])
@permission_classes([IsAuthenticated])
def noop(request: Request) -> Response:
    return Response({"ok": True})
