"""Request validation shared by the API views: a bad value is a 400 naming the field."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request

from billing_service.errors import InvalidInput


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def validated_filters(filterset_class: type, request: Request, queryset: Any = None) -> Any:
    """The bound, valid FilterSet of the request's query parameters."""
    filterset = filterset_class(data=request.query_params, queryset=queryset, request=request)
    if not filterset.is_valid():
        raise InvalidInput(
            f"Invalid input: {', '.join(filterset.errors)}.",
            details={field: list(errors) for field, errors in filterset.errors.items()},
        )
    return filterset
