"""django-filter filters under the API's input rules (``billing_service.inputs``): dates in ASCII digits as
YYYY-MM-DD, UUIDs in their canonical form, text without control characters and of a bounded length."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms

from billing_service.inputs import date_parse, text_problem, uuid_parse


class _DateField(forms.DateField):
    def to_python(self, value: Any):  # noqa: ANN201
        if value in self.empty_values:
            return None
        try:
            return date_parse(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class _UUIDField(forms.UUIDField):
    def to_python(self, value: Any):  # noqa: ANN201
        if value in self.empty_values:
            return None
        try:
            return uuid_parse(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class _TextField(forms.CharField):
    def to_python(self, value: Any) -> str:
        value = super().to_python(value)
        if value and (problem := text_problem(value, max_length=self.max_length or 255)):
            raise forms.ValidationError(problem, code="invalid")
        return value


class DateFilter(django_filters.DateFilter):
    field_class = _DateField


class UUIDFilter(django_filters.UUIDFilter):
    field_class = _UUIDField


class TextFilter(django_filters.CharFilter):
    """Exact text, at most ``max_length`` characters (255 by default)."""

    field_class = _TextField

    def __init__(self, *args: Any, max_length: int = 255, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", max_length)
        kwargs.setdefault("strip", False)
        super().__init__(*args, **kwargs)
