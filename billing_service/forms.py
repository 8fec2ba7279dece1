"""Django form fields under the API's input rules (``billing_service.inputs``), for the admin's forms and the
query filters: dates as YYYY-MM-DD in ASCII digits, canonical UUIDs, strict decimal strings, text without control
characters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms

from billing_service.inputs import date_parse, decimal_parse, instant_parse, text_problem, uuid_parse


def _parsed(field: forms.Field, value: Any, parse: Any) -> Any:
    """``parse(value)``, None for an empty value; a ``ValueError`` becomes the field's error."""
    if value in field.empty_values:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise forms.ValidationError(str(exc), code="invalid") from None


class DateField(forms.DateField):
    def to_python(self, value: Any):  # noqa: ANN201
        return _parsed(self, value, date_parse)


class InstantField(forms.DateTimeField):
    """A strict ISO 8601 date-time, as an aware UTC datetime. A date alone is its UTC midnight, or with
    ``end_of_day`` its last microsecond (an inclusive end then takes the whole day)."""

    def __init__(self, *args: Any, end_of_day: bool = False, **kwargs: Any) -> None:
        self.end_of_day = end_of_day
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any):  # noqa: ANN201
        return _parsed(self, value, self._parse)

    def _parse(self, text: str) -> datetime:
        moment = instant_parse(text, allow_date=True)
        if self.end_of_day and isinstance(text, str) and "T" not in text.upper():
            last = datetime.max.replace(tzinfo=UTC)
            moment = last if moment.date() == last.date() else moment + timedelta(days=1, microseconds=-1)
        return moment


class UUIDField(forms.UUIDField):
    def to_python(self, value: Any):  # noqa: ANN201
        return _parsed(self, value, uuid_parse)


class TextField(forms.CharField):
    """Text under ``text_problem``'s rule; not stripped."""

    def __init__(self, *args: Any, multiline: bool = False, **kwargs: Any) -> None:
        self.multiline = multiline
        kwargs.setdefault("strip", False)
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> str:
        value = super().to_python(value)
        if value and (problem := text_problem(value, max_length=self.max_length or 255, multiline=self.multiline,
                                              blank=not self.required)):
            raise forms.ValidationError(problem, code="invalid")
        return value


class DecimalField(forms.DecimalField):
    """A decimal under ``decimal_parse``'s rule: ``-?[0-9]+(\\.[0-9]{1,6})?``, nothing else."""

    def to_python(self, value: Any) -> Decimal | None:
        return _parsed(self, value, decimal_parse)


class IntegerField(forms.IntegerField):
    """An integer in ASCII digits (``int()`` would also take "٣")."""

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        text = str(value)
        if not text.lstrip("-").isascii() or not text.lstrip("-").isdigit() or text.count("-") > 1 or (
            "-" in text and not text.startswith("-")
        ):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(text)


_STRICT = {forms.DecimalField: DecimalField, forms.IntegerField: IntegerField, forms.CharField: TextField}


class StrictModelForm(forms.ModelForm):
    """A ModelForm whose decimal, integer and text fields follow the API's input rules, for the admin: what the
    API refuses, the admin refuses too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            strict = _STRICT.get(type(field))
            if strict is not None:
                field.__class__ = strict
                if strict is TextField:
                    field.multiline = isinstance(field.widget, forms.Textarea)
