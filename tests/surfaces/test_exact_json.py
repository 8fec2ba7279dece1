"""The surfaces' JSON: decimals written as exact JSON numbers, converted between credit units exactly."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from billing_service.surfaces import decimal_text, exact_json, from_units, units


@pytest.mark.parametrize(
    ("value", "text"),
    [("1E+3", "1000"), ("15.00", "15"), ("-0.00", "0"), ("0.000125", "0.000125"), ("-3.250", "-3.25"),
     ("100.000000000000000000000000000001", "100.000000000000000000000000000001"),
     ("12345678901234567890.123456789012", "12345678901234567890.123456789012")],
)
def test_decimals_are_written_exactly(value, text):
    assert decimal_text(Decimal(value)) == text
    assert json.loads(exact_json({"n": Decimal(value)}), parse_float=Decimal)["n"] == Decimal(value)


def test_everything_else_is_json_and_floats_are_refused():
    data = {"a": [1, True, None, "é\u2028"], "b": {"c": Decimal("0.5")}}

    assert exact_json(data) == '{"a":[1,true,null,"\\u00e9\\u2028"],"b":{"c":0.5}}'
    with pytest.raises(TypeError):
        exact_json({"x": 0.1})
    with pytest.raises(ValueError):
        decimal_text(Decimal("NaN"))


def test_units_convert_both_ways_without_rounding():
    assert units("15.005", Decimal("0.01")) == Decimal("1500.5")
    assert units("123456789012345678.123456789012", Decimal("0.01")) == Decimal("12345678901234567812.3456789012")
    assert from_units(Decimal("1500.5"), Decimal("0.01")) == "15.005"
    assert from_units(7, Decimal("10")) == "70"
    assert units(None, Decimal("0.01")) is None

