"""Drop-in surfaces: other published billing APIs, served by the native views.

A surface is a thin layer with no rule of its own. Its view (``SurfaceView``) maps the request it receives
onto a native view: the path, the query parameters, the body. It calls that view (``forward``), which
authenticates, checks permissions, validates and does the work exactly as it does for the native API. Then it
reshapes the native response: field names, the envelope, number types.

So a surface cannot disagree with the native API. It has the same rules, errors and HTTP statuses and runs the
same queries. The surface view adds no query: it does not authenticate (the native view does).

Amounts leave a surface as JSON numbers written from exact decimals (``ExactJSONRenderer``): "1500",
"0.000125", "12345678.000000000001". The text is exact; a client that reads numbers as doubles may round what has
more than 15 significant digits, and the surfaces that promise numbers put the exact decimal string beside them
where that can happen (see each surface)."""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_service.schema import ErrorSerializer
from billing_service.validation import query_problems

# Response headers a surface passes on from the native response (the rest are the renderer's own).
_PASSED_HEADERS = ("Retry-After", "Idempotent-Replayed", "WWW-Authenticate", "Location", "Allow")


def decimal_text(value: Decimal) -> str:
    """A decimal as a JSON number, exactly: no exponent, no trailing zeros ("1500", "0.5", "-3.25")."""
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    text = format(value, "f")  # exact (normalize() would round to the context's precision)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "0") else text


def exact_json(value: Any) -> str:
    """``value`` as JSON text, decimals as exact numbers. ASCII only, like the native renderer
    (``UNICODE_JSON`` off). A float is refused: amounts are never floats."""
    if value is None or isinstance(value, (bool, str)):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{exact_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(exact_json(item) for item in value) + "]"
    raise TypeError(f"no exact JSON for {type(value).__name__}")


class ExactJSONRenderer(JSONRenderer):
    """JSON with decimals written as exact numbers (``exact_json``)."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None:
            return b""
        return exact_json(data).encode("ascii")


# Exact arithmetic: a unit is a power of ten (settings), so scaling by it never needs rounding; the precision only
# has to hold the digits (a NUMERIC amount, or what a client sent, which the native view then judges).
_EXACT = Context(prec=1000, traps=[Inexact, InvalidOperation, Overflow])


def units(value: Any, unit: Decimal) -> Decimal | None:
    """A native decimal string ("15.00") counted in ``unit`` (0.01 -> 1500). Exact: a fraction of a unit keeps
    its decimals (15.005 -> 1500.5), never truncated."""
    if value is None:
        return None
    return _EXACT.divide(Decimal(value), unit)


def from_units(value: Decimal | int, unit: Decimal) -> str:
    """The native decimal string of ``value`` units of ``unit`` (1500 at 0.01 -> "15")."""
    return decimal_text(_EXACT.multiply(Decimal(value), unit))


def number(value: Any) -> Decimal | None:
    """A native decimal string ("15.00") as a JSON number (Decimal), or None."""
    return None if value is None else Decimal(value)


@extend_schema_field({"type": "number", "example": 2.5})
class ExactNumberField(serializers.Field):
    """Documents an amount a surface writes as a JSON number, exactly (``number``, ``units``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)


def native_view(viewset: type, basename: str, detail: bool = False, **actions: str) -> Callable[..., Any]:
    """A native viewset's view of ``actions`` (``get="list"``), as its router mounts it."""
    return viewset.as_view(actions, basename=basename, detail=detail)


# --- errors answered before a surface's view (the request guards, an unknown path) ----------------------------

# URL path prefix -> how that surface writes an error body (``SurfaceView.shape_error``): registered by each surface
# when its URLs load; ``billing_service.middleware`` and the error handlers ask ``error_body``.
_ERROR_SHAPES: dict[str, Callable[[dict[str, Any]], Any]] = {}


def error_shape_register(prefix: str, shape: Callable[[dict[str, Any]], Any]) -> None:
    _ERROR_SHAPES["/" + prefix.strip("/") + "/"] = shape


def error_body(path: str, body: dict[str, Any]) -> Any:
    """``body`` (the native envelope ``{"error": {...}}``) as the surface serving ``path`` writes errors."""
    for prefix, shape in _ERROR_SHAPES.items():
        if path.startswith(prefix):
            return shape(body["error"])
    return body


KEEP = object()  # forward(): pass the body on unchanged


class SurfaceView(APIView):
    """A view of a surface. It authenticates the caller as the native views do (the same authentication classes:
    so an anonymous call is the native 401 before the surface reads anything) and hands the result to the native
    view, which does not authenticate again (``forward``): the rest, permissions, tenancy and the work, is the
    native view's. ``shape_error`` turns the native error envelope into the surface's own.

    Subclasses implement the HTTP methods: map the request, ``forward`` it, shape the response (``reply``). A
    method takes the query parameters its schema documents (``billing_service.schema.extend_schema`` records them),
    each once: any other is a 400 naming it, as natively, before anything is forwarded."""

    permission_classes: tuple = (IsAuthenticated,)  # a public surface (a provider's webhook) says AllowAny
    throttle_classes: tuple = ()
    renderer_classes = (ExactJSONRenderer,)
    # The error body in the schema (what ``shape_error`` writes): documented for 400/401/403/404/503.
    error_serializer: Any = ErrorSerializer
    # Native field names this surface names otherwise (``{"created_from": "from"}``): a native error's details and
    # message name this surface's fields.
    field_names: Mapping[str, str] = {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        handler = getattr(self, (request.method or "").lower(), None)
        if handler is not None:  # None: a method not taken (405)
            query_problems(request, getattr(handler, "query_parameters", frozenset()))
        super().initial(request, *args, **kwargs)

    def paging(self, request: Request, *, offset: str, limit: str, default_limit: int) -> dict[str, str]:
        """The native ``offset`` and ``limit`` of this surface's parameters ``offset`` and ``limit`` (validated
        natively: a bad value is the native 400). ``self.offset`` and ``self.limit`` are what the page shows."""
        given_offset = request.query_params.get(offset, "0")
        given_limit = request.query_params.get(limit, str(default_limit))
        self.offset, self.limit = _int_or(given_offset, 0), _int_or(given_limit, default_limit)
        return {"offset": given_offset, "limit": given_limit}

    def shape_error(self, error: dict[str, Any]) -> Any:
        """The body of an error response, from the native ``{"code", "message", "details"}``."""
        return {"error": error}

    def forward(
        self,
        request: Request,
        view: Callable[..., Any],
        *,
        query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        body: Any = KEEP,
        **kwargs: Any,
    ) -> Response:
        """The native ``view``'s response to this request (``forward``), as the caller this view authenticated: DRF's
        forced authentication hands the native view this user and token as they are (a JWT's platform and a Token
        user's memberships ride on the user), with no query and no second CSRF check."""
        caller = (request.user, request.auth) if request.user.is_authenticated else None
        return forward(request._request, view, query=query, body=body, caller=caller, **kwargs)

    def reply(self, native: Response, shape: Callable[[Any], Any] | None = None) -> Response:
        """The surface's response to ``native``: a success body shaped by ``shape``; an error as
        ``shape_error`` writes it (``finalize_response``); the native status and headers."""
        data = native.data
        if native.status_code < 400 and shape is not None:
            data = shape(data)
        elif native.status_code >= 400 and self.field_names and isinstance(data, dict):
            data = renamed_error(data, self.field_names)
        headers = {name: native[name] for name in _PASSED_HEADERS if native.has_header(name)}
        return Response(data, status=native.status_code, headers=headers)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Response) and response.status_code >= 400:
            error = (response.data or {}).get("error") if isinstance(response.data, dict) else None
            if isinstance(error, dict) and "code" in error:
                response.data = self.shape_error(error)
        return super().finalize_response(request, response, *args, **kwargs)


def forward(
    request: HttpRequest,
    view: Callable[..., Any],
    *,
    query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    body: Any = KEEP,
    headers: Mapping[str, str] | None = None,
    method: str | None = None,
    caller: tuple[Any, Any] | None = None,
    **kwargs: Any,
) -> Response:
    """The native ``view``'s response to a copy of ``request`` with ``query`` instead of its query string,
    ``body`` (JSON, decimals exact) instead of its body, ``headers`` added (``{"X-Platform-Key": ...}``) and
    ``method`` instead of its own (an HTML form only POSTs). ``kwargs`` are the native URL's. The response is not
    rendered: its ``data`` is the native body."""
    raw: HttpRequest = copy.copy(request)
    raw.META = dict(raw.META)
    if caller is not None:  # (user, token) already authenticated: the native view takes them as they are
        raw._force_auth_user, raw._force_auth_token = caller
    if method is not None:
        raw.method = method
        raw.META["REQUEST_METHOD"] = method
    for name, value in (headers or {}).items():
        raw.META["HTTP_" + name.upper().replace("-", "_")] = value
    if query is not None:
        text = urlencode([(k, v) for k, v in _pairs(query) if v is not None])
        raw.META["QUERY_STRING"] = text
        raw.GET = QueryDict(text)
    if body is not KEEP:
        payload = exact_json(body).encode("ascii")
        raw._stream = io.BytesIO(payload)  # what HttpRequest.read() reads
        raw._read_started = False
        for cached in ("_body", "_post", "_files"):
            raw.__dict__.pop(cached, None)
        raw.META["CONTENT_LENGTH"] = str(len(payload))
        raw.META["CONTENT_TYPE"] = "application/json"
    return view(raw, **kwargs)


def renamed_error(body: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """A native error envelope with the native field ``names`` written as the surface's, in its details (keys and
    messages) and its message."""
    error = body.get("error")
    if not isinstance(error, dict):
        return body
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")

    def text(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda found: names[found.group(1)], value)
        if isinstance(value, list):
            return [text(item) for item in value]
        return value

    details = error.get("details")
    if isinstance(details, dict):
        details = {names.get(key, key): text(value) for key, value in details.items()}
    return {**body, "error": {**error, "message": text(error.get("message")), "details": details}}


def _int_or(text: str, default: int) -> int:
    return int(text) if text.isascii() and text.isdigit() else default


def _pairs(query: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    if isinstance(query, QueryDict):
        return [(k, v) for k in query for v in query.getlist(k)]
    if isinstance(query, Mapping):
        return list(query.items())
    return list(query)
