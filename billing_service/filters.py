"""django-filter filters under the API's input rules (``billing_service.inputs``): dates in ASCII digits as
YYYY-MM-DD, UUIDs in their canonical form, text without control characters and of a bounded length."""

from __future__ import annotations

from typing import Any

import django_filters

from billing_service import forms


class DateFilter(django_filters.DateFilter):
    field_class = forms.DateField


class InstantFilter(django_filters.DateTimeFilter):
    """An ISO 8601 instant; a date alone is its UTC midnight, or with ``end_of_day=True`` its last microsecond."""

    field_class = forms.InstantField


class UUIDFilter(django_filters.UUIDFilter):
    field_class = forms.UUIDField


class TextFilter(django_filters.CharFilter):
    """Exact text, at most ``max_length`` characters (255 by default)."""

    field_class = forms.TextField

    def __init__(self, *args: Any, max_length: int = 255, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", max_length)
        kwargs.setdefault("strip", False)
        super().__init__(*args, **kwargs)
