from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_service.inputs import StrictBooleanField, StrictInputSerializer, StrictUUIDField, TextField
from billing_service.money import MoneyField, format_exact, format_money
from credits.models import CreditAccount, LedgerEntry, TransactionType
from subscriptions.selectors import PRICING_TABLE_SCHEMA, AccountPlanState, account_plan_state, pricing_table


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


class CreditAccountSerializer(serializers.Serializer):
    """The ibl.ai credit account: plan, balance and auto-recharge, plus the ledger's exact figures.

    The plan fields come from ``subscriptions.selectors`` in two queries per account (its latest subscription
    with its plans, and the platform's pricing table)."""

    has_credits = serializers.SerializerMethodField(
        help_text="True when credits are available, or the current plan grants unlimited credits."
    )
    account_id = serializers.UUIDField(source="id")
    available_credits = MoneyOutField(source="available")
    balance = MoneyOutField(help_text="Credits on the account, including reserved ones.")
    reserved = MoneyOutField(help_text="Credits held for calls in progress.")
    carried_remainder = ExactOutField(
        help_text="Usage cost not debited yet: less than 0.000001, charged with the next usage that makes it "
        "a whole 0.000001 (the ledger moves whole 0.000001; usage costs are exact)."
    )
    currency = serializers.CharField()
    current_plan = serializers.SerializerMethodField(
        help_text='Slug of the current subscription\'s plan, or "free_trial" without one.'
    )
    previous_plan = serializers.SerializerMethodField(
        help_text='Slug of the plan before the last change ("free_trial": none); null if it never changed.'
    )
    free_trial = serializers.SerializerMethodField(
        help_text="True without a paid current subscription: none, a trialing one, or one on a trial plan."
    )
    auto_recharge_enabled = serializers.BooleanField()
    auto_recharge_threshold_usd = MoneyOutField(allow_null=True)
    auto_recharge_amount_usd = MoneyOutField(allow_null=True)
    auto_recharge_spending_limit_usd = MoneyOutField(allow_null=True)
    auto_recharge_last_triggered_at = serializers.DateTimeField(allow_null=True)
    can_use_auto_recharge = serializers.SerializerMethodField()
    has_payment_method = serializers.SerializerMethodField()
    pricing_table = serializers.SerializerMethodField(
        help_text="The plans on sale on the platform (active and purchasable), in its order."
    )
    platform_key = serializers.CharField(source="platform.platform_key")
    is_platform_account = serializers.BooleanField()
    last_updated = serializers.DateTimeField(source="last_entry_at", allow_null=True)

    def to_representation(self, account: CreditAccount) -> dict[str, Any]:
        self.__dict__.pop("_has_method", None)
        self._plan_state: AccountPlanState = account_plan_state(account_id=account.pk)  # for the plan fields
        return super().to_representation(account)

    def get_has_credits(self, account: CreditAccount) -> bool:
        return account.available > 0 or self._plan_state.unlimited_credits

    def get_current_plan(self, account: CreditAccount) -> str:
        return self._plan_state.current_plan

    @extend_schema_field({"type": "string", "nullable": True})
    def get_previous_plan(self, account: CreditAccount) -> str | None:
        return self._plan_state.previous_plan

    def get_free_trial(self, account: CreditAccount) -> bool:
        return self._plan_state.free_trial

    def _payment_method(self, account: CreditAccount) -> bool:
        """Whether the account has a saved card for off-session charges (one indexed lookup, cached)."""
        if not hasattr(self, "_has_method"):
            from payments.recharge import account_has_payment_method  # payments builds on credits

            self._has_method = account_has_payment_method(account=account)
        return self._has_method

    @extend_schema_field(serializers.BooleanField(help_text="True when a payment method is saved to charge."))
    def get_can_use_auto_recharge(self, account: CreditAccount) -> bool:
        return self._payment_method(account)

    @extend_schema_field(serializers.BooleanField())
    def get_has_payment_method(self, account: CreditAccount) -> bool:
        return self._payment_method(account)

    @extend_schema_field(PRICING_TABLE_SCHEMA)
    def get_pricing_table(self, account: CreditAccount) -> dict[str, Any]:
        return pricing_table(platform_id=account.platform_id)


class AutoRechargeInputSerializer(StrictInputSerializer):
    """PATCH /api/billing/account/: the auto-recharge settings, each optional; null clears an amount."""

    auto_recharge_enabled = StrictBooleanField(required=False)
    auto_recharge_threshold_usd = MoneyField(
        required=False, allow_null=True, max_digits=12, decimal_places=2,
        help_text='Recharge when available credits fall below this, e.g. "10.00".',
    )
    auto_recharge_amount_usd = MoneyField(
        required=False, allow_null=True, max_digits=12, decimal_places=2,
        help_text="USD charged per recharge (within the platform's top-up range).",
    )
    auto_recharge_spending_limit_usd = MoneyField(
        required=False, allow_null=True, max_digits=12, decimal_places=2,
        help_text="Most USD auto-recharge may charge per calendar month (UTC); null: no limit.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give at least one auto-recharge setting.")
        return attrs


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
