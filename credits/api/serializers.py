from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_service.inputs import StrictInputSerializer, StrictUUIDField, TextField
from billing_service.money import MoneyField, format_exact, format_money
from credits.models import LedgerEntry, TransactionType


def iso_instant(value: datetime | None) -> str | None:
    """A time as the API writes it: ISO 8601 in UTC with a Z (DRF's DateTimeField output)."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@extend_schema_field({"type": "string", "format": "decimal", "example": "42.50"})
class MoneyOutField(serializers.Field):
    def to_representation(self, value: Decimal) -> str | None:
        return format_money(value)


@extend_schema_field({"type": "string", "format": "decimal", "example": "0.0000004"})
class ExactOutField(serializers.Field):
    """An exact usage amount, up to 12 decimals ("0.0000004"; "12.50" when it has at most two)."""

    def to_representation(self, value: Decimal) -> str | None:
        return format_exact(value)


def _uuid_text(value: Any) -> str | None:
    return str(value) if value else None


def _fast_formatter(field: serializers.Field) -> Callable[[Any], Any]:
    """What ``field.to_representation`` writes, for the field types the fast serializers use."""
    if isinstance(field, serializers.UUIDField):
        return _uuid_text
    if isinstance(field, serializers.DateTimeField):
        return iso_instant
    if isinstance(field, MoneyOutField):
        return format_money
    if isinstance(field, ExactOutField):
        return format_exact
    if isinstance(field, (serializers.CharField, serializers.ChoiceField, serializers.IntegerField,
                          serializers.BooleanField, serializers.JSONField)):
        return lambda value: value
    raise TypeError(f"no fast representation for {type(field).__name__}")


class FastOutputSerializer(serializers.Serializer):
    # An output serializer whose declared fields are its one field map: they document the response, and
    # ``to_representation`` writes the same output from a plan built once per class from them, without DRF's
    # per-field machinery (which deep-copies every declared field per instance: it matters on the hot paths,
    # a usage event's response and the listings, bench/transactions_list.py). A field declared
    # ``required=False`` is left out when its value is None; a ``SerializerMethodField`` calls its
    # ``get_<name>``. (Comments, not a docstring: the schema would show it as every subclass's description.)

    _plan: tuple[tuple[str, str, Callable[[Any], Any] | None, bool], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        plan = []
        for name, field in cls._declared_fields.items():
            if isinstance(field, serializers.SerializerMethodField):
                plan.append((name, f"get_{name}", None, False))
            else:
                plan.append((name, field.source or name, _fast_formatter(field), not field.required))
        cls._plan = tuple(plan)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = {}
        for name, source, formatter, optional in self._plan:
            if formatter is None:
                data[name] = getattr(self, source)(instance)
                continue
            value = getattr(instance, source)
            if value is None and optional:
                continue
            data[name] = formatter(value)
        return data


class LedgerEntrySerializer(FastOutputSerializer):
    id = serializers.UUIDField()
    transaction_type = serializers.ChoiceField(choices=TransactionType.choices)
    status = serializers.CharField()
    credits_amount = MoneyOutField(help_text="Credits moved (for reserve and release: the amount held or freed).")
    credits_balance_after = MoneyOutField(source="balance_after", help_text="Running balance after this row.")
    payment_amount_usd = MoneyOutField(
        required=False, help_text="Money paid, present only on top-ups and purchases."
    )
    balance_change = MoneyOutField(source="balance_delta", help_text="Signed effect on the balance.")
    reserved_change = MoneyOutField(source="reserved_delta", help_text="Signed effect on the reserved credits.")
    reserved_after = MoneyOutField()
    sequence = serializers.IntegerField(help_text="Position in the account's ledger: 1, 2, 3... with no gap.")
    hold_id = serializers.UUIDField(allow_null=True)
    description = serializers.CharField()
    reference = serializers.CharField()
    metadata = serializers.JSONField()
    created_at = serializers.DateTimeField()


class PlatformLedgerEntrySerializer(LedgerEntrySerializer):
    account_id = serializers.UUIDField()
    username = serializers.SerializerMethodField(help_text="The member, or null for the platform's own account.")
    actor = serializers.SerializerMethodField(help_text="Who made the change, when a person did.")

    def get_username(self, entry: LedgerEntry) -> str | None:
        user = entry.account.user
        return user.get_username() if user else None

    def get_actor(self, entry: LedgerEntry) -> str | None:
        return entry.actor.get_username() if entry.actor_id else None


class ManualAdjustmentInputSerializer(StrictInputSerializer):
    account_id = StrictUUIDField()
    amount = MoneyField(allow_negative=True, help_text='Signed decimal string, not zero: "25.00" or "-3.50".')
    description = TextField(max_length=500, blank=False, help_text="Why: kept on the ledger row.")
    reference = TextField(max_length=255, required=False, default="")


class AccountQuerySerializer(serializers.Serializer):
    platform_key = TextField(
        required=False, max_length=63, blank=False, help_text="The platform's own account instead of yours (owners and admins)."
    )
