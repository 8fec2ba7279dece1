"""One JSON envelope for every error: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from billing_service import metrics
from billing_service.errors import DomainError

_DRF_CODES = {
    drf_exceptions.ValidationError: "invalid",
    drf_exceptions.ParseError: "malformed_request",
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
}


logger = logging.getLogger(__name__)
# Seconds a client should wait before retrying a request the database could not serve.
RETRY_AFTER_SECONDS = 5


def envelope(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def service_unavailable_response(factory: Callable[..., Any]) -> Any:
    """503 ``service_unavailable`` with ``Retry-After``: the database did not answer. Nothing of the request was
    committed unless its response said so, and every write a client retries is idempotent."""
    logger.exception("database unavailable")
    response = factory(
        envelope("service_unavailable", "The service is temporarily unavailable; retry shortly.", {}), status=503
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        metrics.refusal(exc.code)
        exc.follow_up()  # the view's transactions have ended (ATOMIC_REQUESTS is off)
        return Response(envelope(exc.code, exc.message, exc.details), status=exc.status_code, headers=exc.headers())
    if isinstance(exc, (OperationalError, InterfaceError)):
        return service_unavailable_response(Response)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real server error: Django's 500 handler answers (handler500 below)
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, drf_exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        fields = ", ".join(str(name) for name in details)
        message = f"Invalid input: {fields}." if fields else "Invalid input."
    else:
        details = {}
        message = str(getattr(exc, "detail", exc))
    response.data = envelope(code, message, details)
    return response


def _handled(request, body: dict[str, Any], status: int) -> JsonResponse:  # noqa: ANN001
    from billing_service.surfaces import error_body  # the shape of the API the path belongs to

    return JsonResponse(error_body(request.path_info, body), status=status, safe=False)


def handler404(request, exception=None):  # noqa: ANN001 - Django handler signature
    return _handled(request, envelope("not_found", "Not found."), 404)


def handler500(request):  # noqa: ANN001
    return _handled(request, envelope("server_error", "Internal server error."), 500)


def handler400(request, exception=None):  # noqa: ANN001
    return _handled(request, envelope("bad_request", "Bad request."), 400)


def handler403(request, exception=None):  # noqa: ANN001
    return _handled(request, envelope("permission_denied", "Permission denied."), 403)
