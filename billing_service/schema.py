"""OpenAPI: the error envelope, documented on every operation."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="Stable machine-readable code, e.g. insufficient_credits."),
                "message": serializers.CharField(help_text="Human-readable explanation."),
                "details": serializers.DictField(
                    help_text="Per-field messages for invalid input; otherwise extra context.",
                ),
            },
        )
    },
)


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


def paginated(serializer_class: type[serializers.Serializer], name: str) -> serializers.Serializer:
    """The body of a paginated listing: ``count`` (page pagination only), ``next``, ``previous``, ``results``."""
    from drf_spectacular.drainage import set_override

    body = inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(
                required=False, help_text="Rows matching the filters (absent with cursor pagination)."
            ),
            "next": serializers.URLField(allow_null=True, help_text="The next (older) page, or null."),
            "previous": serializers.URLField(allow_null=True, help_text="The previous (newer) page, or null."),
            "results": serializer_class(many=True),
        },
    )
    set_override(body, "many", False)  # one object, although the view's action is ``list``
    return body


def filterset_parameters(filterset_class: type) -> list:
    """The query parameters of a django-filter FilterSet (drf-spectacular only reads FilterSets on generic
    views with a queryset, so these viewsets document them explicitly)."""
    import django_filters
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import OpenApiParameter

    params = []
    for name, flt in filterset_class.base_filters.items():
        enum = None
        if isinstance(flt, django_filters.ChoiceFilter):
            kind, enum = OpenApiTypes.STR, [value for value, _label in flt.extra["choices"]]
        elif isinstance(flt, django_filters.DateFilter):
            kind = OpenApiTypes.DATE
        elif isinstance(flt, django_filters.UUIDFilter):
            kind = OpenApiTypes.UUID
        else:
            kind = OpenApiTypes.STR
        params.append(
            OpenApiParameter(
                name, kind, OpenApiParameter.QUERY, enum=enum, description=str(flt.extra.get("help_text", ""))
            )
        )
    return params


ERROR_RESPONSES = {
    400: error_response("Invalid input (the fields are named in details), or X-Platform-Key needed."),
    401: error_response("Missing or invalid credentials."),
    403: error_response("Not a member of the platform, or the action needs an owner or admin."),
    404: error_response("Not found (or not yours)."),
}


# Every operation (billing_service.middleware and the exception handler).
SERVICE_RESPONSES = {
    503: error_response(
        "The database did not answer (service_unavailable): retry after the Retry-After header's seconds. A "
        "write either committed and answered, or did not commit; retried writes are idempotent."
    ),
}
# Every operation with a body.
BODY_RESPONSES = {
    411: error_response("A chunked body (Transfer-Encoding: chunked) is refused (length_required): send a "
                        "Content-Length."),
    413: error_response("The body is over the endpoint's limit (request_too_large); details name the limit."),
}


class BillingAutoSchema(AutoSchema):
    """Adds the error envelope for 400/401/403/404 wherever a view did not document them itself."""

    def get_override_parameters(self):  # noqa: ANN201
        params = super().get_override_parameters()
        from drf_spectacular.utils import OpenApiParameter

        if getattr(self.view, "tenant_scoped", True) and self.path.startswith("/api/billing/"):
            params = [
                *params,
                OpenApiParameter(
                    "X-Platform-Key",
                    str,
                    OpenApiParameter.HEADER,
                    description="The platform to act in; needed when you belong to several.",
                ),
            ]
        return params

    def _get_response_bodies(self, direction="response"):  # noqa: ANN001, ANN202
        responses = super()._get_response_bodies(direction=direction)
        # A drop-in surface (billing_service.surfaces) documents its own error body.
        error_body = getattr(self.view, "error_serializer", None)
        if not self.path.startswith("/api/billing/") and error_body is None:
            return responses
        public = getattr(self.view, "public_endpoint", False)  # no token (a provider webhook): no 401/403/404
        documented = dict(ERROR_RESPONSES) | SERVICE_RESPONSES
        if self.method in ("POST", "PUT", "PATCH"):
            documented |= BODY_RESPONSES
        for status_code, response in documented.items():
            key = str(status_code)
            if key not in responses and not (public and status_code in (401, 403, 404)):
                body = error_body or response.response
                responses[key] = self._get_response_for_code(body, key, direction=direction)
                responses[key]["description"] = response.description
        return responses


class MoneyFieldExtension(OpenApiSerializerFieldExtension):
    """A ``MoneyField`` as the API takes it: a strict decimal string (``billing_service.inputs``), with the
    field's own sign and number of decimals."""

    target_class = "billing_service.money.MoneyField"

    def map_serializer_field(self, auto_schema, direction):  # noqa: ANN001, ANN201
        field = self.target
        sign = "-?" if field.allow_negative else ""
        places = field.decimal_places
        schema = {
            "type": "string",
            "format": "decimal",
            "pattern": rf"^{sign}[0-9]+(\.[0-9]{{1,{places}}})?$",
            "example": "-12.50" if field.allow_negative else "12.50",
        }
        return schema


def query_parameter_names(parameters: list) -> frozenset[str]:
    """The names of the query parameters an ``extend_schema(parameters=...)`` list documents: each query
    ``OpenApiParameter``, and each field of a serializer class given there (as the schema names them)."""
    from drf_spectacular.utils import OpenApiParameter

    names: set[str] = set()
    for parameter in parameters:
        if isinstance(parameter, OpenApiParameter):
            if parameter.location == OpenApiParameter.QUERY:
                names.add(parameter.name)
        elif isinstance(parameter, type) and issubclass(parameter, serializers.Serializer):
            names.update(parameter().fields)
    return frozenset(names)


def extend_schema(**kwargs):  # noqa: ANN003, ANN201
    """drf-spectacular's ``extend_schema``, which also records the operation's documented query parameters on
    the view method (``query_parameters``): what the schema documents is exactly what the view takes, and
    ``accounts.api.views.TenantViewSetMixin`` refuses any other query parameter with a 400 naming it."""
    from drf_spectacular.utils import extend_schema as spectacular_extend_schema

    decorate = spectacular_extend_schema(**kwargs)
    names = query_parameter_names(list(kwargs.get("parameters") or []))

    def decorator(view_method):  # noqa: ANN001, ANN202
        view_method.query_parameters = names
        return decorate(view_method)

    return decorator
