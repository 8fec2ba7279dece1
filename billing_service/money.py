"""Exact money: parsing limits, the API's string format, and the DRF field that enforces both."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from rest_framework import serializers

DECIMAL_PLACES = 6
QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)  # 0.000001
# NUMERIC(20, 6) in the database; one request may move at most a billion credits.
MAX_DIGITS = 20
MAX_AMOUNT = Decimal("1000000000")


def format_money(value: Decimal | None) -> str | None:
    """42.5 -> "42.50", 0.000125 -> "0.000125", 3 -> "3.00": at least two decimals, no trailing noise."""
    if value is None:
        return None
    value = Decimal(value)
    normalized = value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN).normalize()
    if normalized.as_tuple().exponent > -2:  # type: ignore[operator]
        normalized = normalized.quantize(Decimal("0.01"))
    text = format(normalized, "f")
    return "0.00" if text in {"-0.00", "-0"} else text


class MoneyField(serializers.DecimalField):
    """A decimal amount given as a string or a JSON number (parsed exactly), never a bool or a float.

    Rejects NaN, Infinity, more than six decimals, and magnitudes over ``MAX_AMOUNT``.
    ``allow_negative`` and ``allow_zero`` control the sign; output is ``format_money``.
    """

    default_error_messages = {
        "not_a_number": "Must be a decimal number given as a string, e.g. \"12.50\".",
        "zero": "Must not be zero.",
        "negative": "Must be greater than zero.",
        "too_large": f"Must be at most {MAX_AMOUNT} in magnitude.",
    }

    def __init__(self, *, allow_negative: bool = False, allow_zero: bool = False, **kwargs: Any) -> None:
        self.allow_negative = allow_negative
        self.allow_zero = allow_zero
        kwargs.setdefault("max_digits", MAX_DIGITS)
        kwargs.setdefault("decimal_places", DECIMAL_PLACES)
        kwargs.setdefault("coerce_to_string", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, (str, int, Decimal)):
            self.fail("not_a_number")
        if isinstance(data, str):
            data = data.strip()
            try:
                parsed = Decimal(data)
            except InvalidOperation:
                self.fail("invalid")
            if not parsed.is_finite():
                self.fail("invalid")
        value = super().to_internal_value(data)
        if value == 0 and not self.allow_zero:
            self.fail("zero")
        if value < 0 and not self.allow_negative:
            self.fail("negative")
        if abs(value) > MAX_AMOUNT:
            self.fail("too_large")
        return value

    def to_representation(self, value: Any) -> str | None:
        return format_money(value)
