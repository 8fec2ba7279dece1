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


def query_problems(request: Request, allowed: frozenset[str]) -> None:
    """A 400 naming every query parameter not in ``allowed``, and every one given more than once (only one value
    would be read)."""
    params = request.query_params
    problems = {name: ["Unknown query parameter for this operation."] for name in sorted(set(params) - allowed)}
    problems |= {name: ["Given more than once."] for name, values in params.lists()
                 if len(values) > 1 and name not in problems}
    if problems:
        raise InvalidInput(f"Invalid input: {', '.join(problems)}.", details=problems)
