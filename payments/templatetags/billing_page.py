"""Template filters of the billing page."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template
from django.utils.formats import number_format

register = template.Library()


@register.filter
def money(value: object) -> str:
    """An API amount (an exact decimal string, "1234.50" or "0.000125") in the reader's locale ("1,234.50",
    "1.234,50"), every digit kept: formatted from the decimal, never through a float."""
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return number_format(amount, use_l10n=True, force_grouping=True)
