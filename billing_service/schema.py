"""OpenAPI: the error envelope, documented on every operation."""

from __future__ import annotations

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


ERROR_RESPONSES = {
    400: error_response("Invalid input (the fields are named in details), or X-Platform-Key needed."),
    401: error_response("Missing or invalid credentials."),
    403: error_response("Not a member of the platform, or the action needs an owner or admin."),
    404: error_response("Not found (or not yours)."),
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
        for status_code, response in ERROR_RESPONSES.items():
            key = str(status_code)
            if key not in responses:
                responses[key] = self._get_response_for_code(response.response, key, direction=direction)
                responses[key]["description"] = response.description
        return responses
