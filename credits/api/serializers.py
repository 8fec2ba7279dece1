from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_service.money import MoneyField, format_money
from credits.models import CreditAccount, LedgerEntry, TransactionType


@extend_schema_field({"type": "string", "format": "decimal", "example": "42.50"})
class MoneyOutField(serializers.Field):
    def to_representation(self, value: Decimal) -> str | None:
        return format_money(value)


class CreditAccountSerializer(serializers.Serializer):
    """The ibl.ai credit account: plan, balance and auto-recharge, plus the ledger's exact figures."""

    has_credits = serializers.SerializerMethodField(help_text="True when credits are available or unlimited.")
    account_id = serializers.UUIDField(source="id")
    available_credits = MoneyOutField(source="available")
    balance = MoneyOutField(help_text="Credits on the account, including reserved ones.")
    reserved = MoneyOutField(help_text="Credits held for calls in progress.")
    currency = serializers.CharField()
    current_plan = serializers.SerializerMethodField()
    previous_plan = serializers.SerializerMethodField()
    free_trial = serializers.SerializerMethodField()
    auto_recharge_enabled = serializers.BooleanField()
    auto_recharge_threshold_usd = MoneyOutField(allow_null=True)
    auto_recharge_amount_usd = MoneyOutField(allow_null=True)
    auto_recharge_spending_limit_usd = MoneyOutField(allow_null=True)
    auto_recharge_last_triggered_at = serializers.DateTimeField(allow_null=True)
    can_use_auto_recharge = serializers.SerializerMethodField()
    has_payment_method = serializers.SerializerMethodField()
    pricing_table = serializers.SerializerMethodField()
    platform_key = serializers.CharField(source="platform.platform_key")
    is_platform_account = serializers.BooleanField()
    last_updated = serializers.DateTimeField(source="last_entry_at", allow_null=True)

    # Plans and payment methods arrive with subscriptions and payments; until then every account is on
    # the free trial, has no saved payment method and so cannot auto-recharge.
    def get_has_credits(self, account: CreditAccount) -> bool:
        return account.available > 0

    def get_current_plan(self, account: CreditAccount) -> str:
        return "free_trial"

    def get_previous_plan(self, account: CreditAccount) -> str | None:
        return None

    def get_free_trial(self, account: CreditAccount) -> bool:
        return True

    def get_can_use_auto_recharge(self, account: CreditAccount) -> bool:
        return False

    def get_has_payment_method(self, account: CreditAccount) -> bool:
        return False

    @extend_schema_field({"type": "object", "nullable": True, "additionalProperties": True})
    def get_pricing_table(self, account: CreditAccount) -> dict | None:
        return None


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
        data = super().to_representation(instance)
        if instance.payment_amount_usd is None:
            data.pop("payment_amount_usd")
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


class UUIDStringField(serializers.UUIDField):
    """A UUID given as a string (DRF's UUIDField would also take a JSON integer as one)."""

    def to_internal_value(self, data: Any):  # noqa: ANN201
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class ManualAdjustmentInputSerializer(serializers.Serializer):
    account_id = UUIDStringField()
    amount = MoneyField(allow_negative=True, help_text='Signed decimal string, not zero: "25.00" or "-3.50".')
    description = serializers.CharField(max_length=500, help_text="Why: kept on the ledger row.")
    reference = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)


class AccountQuerySerializer(serializers.Serializer):
    platform_key = serializers.CharField(
        required=False, max_length=63, help_text="The platform's own account instead of yours (owners and admins)."
    )
