"""Request guards that apply to every endpoint before its view reads anything, and the answer when the database
is unreachable.

- A path, query string or header holding NUL (which PostgreSQL cannot take in text) is a 400
  ``malformed_request``.
- A body sent with ``Transfer-Encoding: chunked`` is a 411 ``length_required``: the WSGI servers we run behind
  hand Django no length for it, so it would read as empty.
- A body over the endpoint's limit (``Content-Length``) is a 413 ``request_too_large`` before it is read. The
  limit is ``settings.API_MAX_BODY_BYTES`` unless the view names its own: ``max_body_bytes`` on the view class,
  an int or a ``{action: int}`` mapping for a viewset.
- A database that does not answer (``OperationalError``, ``InterfaceError``) is a 503 ``service_unavailable``
  with ``Retry-After``, from any view (the REST framework's exception handler answers the same for its views).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from billing_service.exceptions import envelope, service_unavailable_response
from billing_service.surfaces import error_body


def body_limit_of(view_func: Callable[..., Any], method: str) -> int:
    """The largest body (bytes) the view takes for ``method``."""
    cls = getattr(view_func, "cls", None) or getattr(view_func, "view_class", None)
    limit = getattr(cls, "max_body_bytes", None)
    if isinstance(limit, dict):
        action = (getattr(view_func, "actions", None) or {}).get(method.lower())
        limit = limit.get(action)
    return int(limit) if limit else settings.API_MAX_BODY_BYTES


def _error(request: HttpRequest, body: dict[str, Any], status: int) -> JsonResponse:
    """An error answered here, in the shape of the API the path belongs to (a drop-in surface's, or the native)."""
    return JsonResponse(error_body(request.path_info, body), status=status, safe=False)


class RequestGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 - loads the URLs: the surfaces register their error shapes

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path_info or any(
            "\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()
        ):
            return _error(request, envelope("malformed_request", "The URL holds a NUL character.", {}), 400)
        if any("\x00" in str(value) for name, value in request.META.items() if name.startswith("HTTP_")):
            return _error(request, envelope("malformed_request", "A request header holds a NUL character.", {}), 400)
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return _error(request, envelope(
                "length_required", "Chunked request bodies are not accepted: send the body with a Content-Length.", {}
            ), 411)
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(request, envelope("malformed_request", "Invalid Content-Length.", {}), 400)
        limit = body_limit_of(view_func, request.method or "GET")
        if length > limit:
            return _error(request, envelope(
                "request_too_large", f"The request body is {length} bytes; this endpoint takes at most {limit}.",
                {"max_bytes": limit, "content_length": length},
            ), 413)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)):
            return service_unavailable_response(
                lambda body, status: JsonResponse(error_body(request.path_info, body), status=status, safe=False))
        return None
