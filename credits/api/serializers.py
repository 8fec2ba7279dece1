from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
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


class LedgerEntrySerializer(serializers.Serializer):
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

    def to_representation(self, instance: LedgerEntry) -> dict[str, Any]:
        # Written out: the same output as the declared fields (which document it), at a fraction of the cost
        # of DRF's per-field machinery on the hot paths (a usage event's response, listings).
        data = {
            "id": str(instance.id),
            "transaction_type": instance.transaction_type,
            "status": instance.status,
            "credits_amount": format_money(instance.credits_amount),
            "credits_balance_after": format_money(instance.balance_after),
            "balance_change": format_money(instance.balance_delta),
            "reserved_change": format_money(instance.reserved_delta),
            "reserved_after": format_money(instance.reserved_after),
            "sequence": instance.sequence,
            "hold_id": str(instance.hold_id) if instance.hold_id else None,
            "description": instance.description,
            "reference": instance.reference,
            "metadata": instance.metadata,
            "created_at": iso_instant(instance.created_at),
        }
        if instance.payment_amount_usd is not None:
            data["payment_amount_usd"] = format_money(instance.payment_amount_usd)
        return data


class PlatformLedgerEntrySerializer(LedgerEntrySerializer):
    account_id = serializers.UUIDField()
    username = serializers.SerializerMethodField(help_text="The member, or null for the platform's own account.")
    actor = serializers.SerializerMethodField(help_text="Who made the change, when a person did.")

    def get_username(self, entry: LedgerEntry) -> str | None:
        user = entry.account.user
        return user.get_username() if user else None

    def get_actor(self, entry: LedgerEntry) -> str | None:
        return entry.actor.get_username() if entry.actor_id else None

    def to_representation(self, instance: LedgerEntry) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["account_id"] = str(instance.account_id)
        data["username"] = self.get_username(instance)
        data["actor"] = self.get_actor(instance)
        return data


class ManualAdjustmentInputSerializer(StrictInputSerializer):
    account_id = StrictUUIDField()
    amount = MoneyField(allow_negative=True, help_text='Signed decimal string, not zero: "25.00" or "-3.50".')
    description = TextField(max_length=500, blank=False, help_text="Why: kept on the ledger row.")
    reference = TextField(max_length=255, required=False, default="")


class AccountQuerySerializer(serializers.Serializer):
    platform_key = TextField(
        required=False, max_length=63, blank=False, help_text="The platform's own account instead of yours (owners and admins)."
    )
