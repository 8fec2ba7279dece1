"""``{{ value|money }}``: an amount as the API writes it ("12.50", "0.000400", "0.0000004")."""

from __future__ import annotations

from decimal import Decimal

from django import template

from billing_service.money import format_exact

register = template.Library()


@register.filter
def money(value: Decimal | None) -> str:
    return format_exact(value) if value is not None else "-"
