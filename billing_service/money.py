"""Exact money: parsing limits, the API's string format, and the DRF field that enforces both."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any

from rest_framework import serializers

from billing_service.inputs import DECIMAL_HELP, decimal_parse

DECIMAL_PLACES = 6
QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)  # 0.000001
# NUMERIC(20, 6) in the database; one request may move at most a billion credits.
MAX_DIGITS = 20
MAX_AMOUNT = Decimal("1000000000")

# Exact usage costs: a price per million tokens (6 decimals) times a token count, divided by a million, has at
# most 12 decimals, so NUMERIC(32, 12) holds every cost exactly. The ledger moves whole quanta (QUANTUM); what
# is left of a cost below a quantum is carried on the account (``credits.ledger.charge_split``).
EXACT_DECIMAL_PLACES = 12
EXACT_QUANTUM = Decimal(1).scaleb(-EXACT_DECIMAL_PLACES)
EXACT_MAX_DIGITS = 32
# Arithmetic on exact amounts: wide enough for any sum the service makes, and any rounding raises.
EXACT_CONTEXT = Context(prec=60, traps=[Inexact, InvalidOperation, Overflow])


_FLOOR_CONTEXT = Context(prec=60, rounding=ROUND_FLOOR, traps=[InvalidOperation])


def floor_to_quantum(value: Decimal) -> Decimal:
    """``value`` rounded down to a whole quantum (0.000001)."""
    return value.quantize(QUANTUM, context=_FLOOR_CONTEXT)


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


_WIDE = Context(prec=60)  # no exact amount the service handles needs more digits


def format_exact(value: Decimal | None) -> str | None:
    """An exact amount (up to 12 decimals) as the API writes it: "0.0000004", "12.50", "3.00"."""
    if value is None:
        return None
    value = Decimal(value)
    if value == value.quantize(QUANTUM, context=_WIDE):
        return format_money(value)
    return format(value.quantize(EXACT_QUANTUM, context=_WIDE).normalize(_WIDE), "f")


class MoneyField(serializers.DecimalField):
    """A decimal amount given as a strict decimal string or a JSON number (``billing_service.inputs``).

    Rejects NaN, Infinity, more than six decimals, and magnitudes over ``MAX_AMOUNT``.
    ``allow_negative`` and ``allow_zero`` control the sign; output is ``format_money``.
    """

    default_error_messages = {
        "not_a_number": DECIMAL_HELP,
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

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        # Only null is null: DRF's DecimalField would also read "" (or spaces) as null.
        return serializers.Field.validate_empty_values(self, data)

    def to_internal_value(self, data: Any) -> Decimal:
        try:
            data = decimal_parse(data)
        except ValueError:
            self.fail("not_a_number")
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
